"""Gearman protocol: packet codec, pipelined asyncio worker, admin protocol, tiny client."""

from .admin import FunctionStatus, WorkerInfo
from .client import GearmanClient, SubmitError
from .protocol import Decoder, Packet, PacketType, ProtocolError, encode
from .worker import GearmanWorker, Job

__all__ = [
    "Decoder", "Packet", "PacketType", "ProtocolError", "encode",
    "GearmanWorker", "Job", "GearmanClient", "SubmitError", "FunctionStatus", "WorkerInfo",
]
