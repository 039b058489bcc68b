"""MindIE's HTTP wire format in one place: the emulator builds its bodies and events here, and smoke and bench
build their requests and decode every stream here.

`format` holds the facts (field names, defaults, status codes, the exact shape of each body and stream event of
MindIE 2.3.0, each citing the MindIE-LLM file:line it was read from); `stream` is the one stream decoder.
"""

from mindie_pack.wire.format import API_PATHS, Api, request_body
from mindie_pack.wire.stream import StreamDecoder, StreamResult, split_frames

__all__ = ["API_PATHS", "Api", "StreamDecoder", "StreamResult", "request_body", "split_frames"]
