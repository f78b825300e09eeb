# Generated from secagg/transport/secagg.proto by scripts/gen_transport_stubs.sh
# (grpcio-tools 1.71.2, protobuf 5.29 gencode: imports under protobuf >= 5.29, 6.x, 7.x).
# Do not edit; regenerate instead.
# ruff: noqa
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JoinRequest(_message.Message):
    __slots__ = ("client_id", "version")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    client_id: int
    version: int
    def __init__(self, client_id: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class SessionOpen(_message.Message):
    __slots__ = ("session_id", "config", "round_timeout_ms", "sequence")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ROUND_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    config: bytes
    round_timeout_ms: int
    sequence: int
    def __init__(self, session_id: _Optional[bytes] = ..., config: _Optional[bytes] = ..., round_timeout_ms: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("session_id", "round", "total_length", "offset", "data")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    round: int
    total_length: int
    offset: int
    data: bytes
    def __init__(self, session_id: _Optional[bytes] = ..., round: _Optional[int] = ..., total_length: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SessionEnd(_message.Message):
    __slots__ = ("session_id", "status", "reason")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[SessionEnd.Status]
        DONE: _ClassVar[SessionEnd.Status]
        ABORTED: _ClassVar[SessionEnd.Status]
    STATUS_UNSPECIFIED: SessionEnd.Status
    DONE: SessionEnd.Status
    ABORTED: SessionEnd.Status
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    status: SessionEnd.Status
    reason: str
    def __init__(self, session_id: _Optional[bytes] = ..., status: _Optional[_Union[SessionEnd.Status, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class Goodbye(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ServerEnvelope(_message.Message):
    __slots__ = ("open", "chunk", "end", "goodbye")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    GOODBYE_FIELD_NUMBER: _ClassVar[int]
    open: SessionOpen
    chunk: Chunk
    end: SessionEnd
    goodbye: Goodbye
    def __init__(self, open: _Optional[_Union[SessionOpen, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ..., end: _Optional[_Union[SessionEnd, _Mapping]] = ..., goodbye: _Optional[_Union[Goodbye, _Mapping]] = ...) -> None: ...

class ClientChunk(_message.Message):
    __slots__ = ("session_id", "round", "total_length", "client_id", "data")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    round: int
    total_length: int
    client_id: int
    data: bytes
    def __init__(self, session_id: _Optional[bytes] = ..., round: _Optional[int] = ..., total_length: _Optional[int] = ..., client_id: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("received",)
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    received: int
    def __init__(self, received: _Optional[int] = ...) -> None: ...
