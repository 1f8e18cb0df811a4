"""From the shmqueue 0.0.2 README, section "Custom serialization".

The README block runs as written; only its import is changed to shmq.compat. What is
not from the README is marked (the imports and definitions a fragment assumes, and checks).
"""

# --- the README block, as written (only the import changed) --------------------------
import struct, shmq.compat.shmqueue as shmqueue
from shmq.compat.shmqueue import SerializationMethods

MY_METHOD = SerializationMethods.FIRST_PUBLIC_NUMBER + 1

q = shmqueue.ShmQueue("my_queue", buffer_size=1000)

def my_serializer(method: int, data) -> bytes:
    if method == MY_METHOD:
        return struct.pack("I", data)
    raise NotImplementedError

def my_deserializer(method: int, chunks: list) -> int:
    if method == MY_METHOD:
        return struct.unpack("I", b"".join(chunks))[0]
    raise NotImplementedError

q.custom_serialize(my_serializer)
q.custom_deserialize(my_deserializer)

q.put(42, serialization_method=MY_METHOD)
assert q.get() == 42
