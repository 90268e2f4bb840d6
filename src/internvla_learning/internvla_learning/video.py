"""H.264 (yuv420p) MP4 encoding and segment decoding with PyAV, shared by the dataset writers/reader.

:class:`Mp4Encoder` keeps one encoder open per file: frames are appended episode after episode with
consecutive presentation timestamps ``frame_number / fps`` (time base ``1/fps``), so an episode that
starts at frame ``n`` of the file occupies ``[n / fps, (n + T) / fps)``; that is the ``from_timestamp`` /
``to_timestamp`` LeRobot v3.0 stores per episode. :func:`decode_segment` returns those frames again.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

DEFAULT_CRF = 23
DEFAULT_GOP = 10


class Mp4Encoder:
    """One open H.264 MP4 file; ``write(frames)`` appends ``uint8 [T, H, W, 3]`` RGB frames."""

    def __init__(self, path: str | Path, fps: int, width: int, height: int, crf: int = DEFAULT_CRF,
                 gop: int = DEFAULT_GOP, preset: str = "veryfast"):  # fmt: skip
        if width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs even image sizes, got {width}x{height}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = int(fps)
        self.width, self.height = int(width), int(height)
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps, 1))
        self._stream.width = self.width
        self._stream.height = self.height
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = Fraction(1, self.fps)
        self._stream.options = {"crf": str(int(crf)), "g": str(int(gop)), "preset": preset}
        self.frames_written = 0
        self.bytes_written = 0
        self._closed = False

    def write(self, frames: np.ndarray) -> tuple[float, float]:
        """Append frames; returns the (from_timestamp, to_timestamp) in seconds they occupy in the file."""
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
            raise ValueError(
                f"{self.path.name}: expected uint8 [T, {self.height}, {self.width}, 3], got {frames.dtype} {frames.shape}"
            )
        start = self.frames_written
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.frames_written
            frame.time_base = Fraction(1, self.fps)
            self._mux(self._stream.encode(frame))
            self.frames_written += 1
        return start / self.fps, self.frames_written / self.fps

    def _mux(self, packets) -> None:
        for packet in packets:
            self.bytes_written += packet.size
            self._container.mux(packet)

    @property
    def size_in_mb(self) -> float:
        return self.bytes_written / (1024 * 1024)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._mux(self._stream.encode(None))
        finally:
            self._container.close()

    def abort(self) -> None:
        """Close without flushing (used when a write fails; the file is discarded with its dataset)."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):  # best effort on an already failing path
                self._container.close()


def video_info(path: str | Path) -> dict:
    """The ``info`` block LeRobot stores for a video feature in ``meta/info.json`` (probed from the file)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "video.height": int(stream.height),
            "video.width": int(stream.width),
            "video.codec": stream.codec_context.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(round(float(stream.base_rate or stream.average_rate))),
            "video.channels": 3,
            "has_audio": False,
        }


def decode_segment(path: str | Path, from_timestamp: float, to_timestamp: float, fps: int) -> np.ndarray:
    """Decode the frames whose timestamps lie in ``[from_timestamp, to_timestamp)`` as uint8 [T, H, W, 3]."""
    first = int(round(from_timestamp * fps))
    end = int(round(to_timestamp * fps))
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if first > 0:  # seek to the key frame at or before the segment start
            container.seek(int(from_timestamp / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            index = int(round(float(frame.pts * frame.time_base) * fps))
            if index < first:
                continue
            if index >= end:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    if len(frames) != end - first:
        raise ValueError(
            f"{path}: decoded {len(frames)} frames in [{from_timestamp}, {to_timestamp}), expected {end - first}"
        )
    return np.stack(frames)
