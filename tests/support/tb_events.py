"""Read TensorBoard event files without TensorBoard: the TFRecord framing (length, masked CRC32C, payload,
masked CRC32C) decoded with tensorboardX's protobufs, and TensorBoard's purge rule applied."""

from __future__ import annotations

import glob
import os
import struct

from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.record_writer import masked_crc32c


def read_events(path: str) -> list[Event]:
    """Every complete record of one events file, CRCs checked (a torn last record ends the file, as in TensorBoard)."""
    events = []
    with open(path, "rb") as fh:
        while len(header := fh.read(12)) == 12:
            length, header_crc = struct.unpack("<QI", header)
            assert masked_crc32c(header[:8]) == header_crc, f"{path}: bad length CRC"
            payload, footer = fh.read(length), fh.read(4)
            if len(payload) < length or len(footer) < 4:
                break
            assert masked_crc32c(payload) == struct.unpack("<I", footer)[0], f"{path}: bad payload CRC"
            events.append(Event.FromString(payload))
    return events


def _visible(logdir: str) -> list[Event]:
    """The events TensorBoard shows: files in name order; a session START at step S hides earlier steps >= S."""
    shown: list[Event] = []
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for event in read_events(path):
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                shown = [e for e in shown if e.step < event.step]
            shown.append(event)
    return shown


def scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """`{tag: [(step, value), ...]}` of the scalars TensorBoard shows, in write order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for event in _visible(logdir):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def images(logdir: str) -> dict[str, list[tuple[int, int, int]]]:
    """`{tag: [(step, height, width), ...]}` of the images TensorBoard shows."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    for event in _visible(logdir):
        for value in event.summary.value:
            if value.HasField("image"):
                out.setdefault(value.tag, []).append((event.step, value.image.height, value.image.width))
    return out
