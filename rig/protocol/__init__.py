"""Protocol layer: IEC 62055-52 messages over IEC 62056-21 frames. Bytes in, objects out."""
from rig.protocol.messages import (
    COMMANDS, Ack, BreakCommand, Command, Data, DataSet, ExecuteCommand, IDRequest, IDResponse,
    Message, Nak, OptionSelect, PasswordCommand, ProtocolError, ReadCommand, UndefinedCommand,
    WriteCommand, message_from_frame, messages_from_frames, parse, parse_datasets,
)

__all__ = [
    "COMMANDS", "Ack", "BreakCommand", "Command", "Data", "DataSet", "ExecuteCommand", "IDRequest",
    "IDResponse", "Message", "Nak", "OptionSelect", "PasswordCommand", "ProtocolError",
    "ReadCommand", "UndefinedCommand", "WriteCommand", "message_from_frame", "messages_from_frames", "parse",
    "parse_datasets",
]
