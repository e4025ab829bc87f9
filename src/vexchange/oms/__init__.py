"""Open Memory Specification (OMS) v1.3 memory grains. docs/formats/oms.md."""

from .canonical import decode as decode_msgpack
from .canonical import encode as encode_msgpack
from .errors import OMSError, error_class
from .grain import Grain, content_address, decode_grain, encode_grain, verify_address

__all__ = ["Grain", "OMSError", "content_address", "decode_grain", "decode_msgpack",
           "encode_grain", "encode_msgpack", "error_class", "verify_address"]
