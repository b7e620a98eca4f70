"""Videos (mp4, avi, mov, anything PyAV / FFmpeg reads) as grey-level volumes.

Each decoded frame becomes one slice of a (frames, height, width) uint8 volume holding the
frames' luminance (FFmpeg's "gray" conversion: the Y of BT.601, full range). The volume's grid is
the trivial one: spacing 1 (pixel / frame), origin 0, identity direction; the series generated
from it is an ultrasound series of single-frame Secondary Capture instances, one per video frame
(InstanceNumber = frame number), so the viewer addresses frames like slices.
"""

from pathlib import Path
from typing import Any

import av
import numpy as np
import SimpleITK as sitk

from annotator.core.errors import InvalidInput
from annotator.core.redact import without_paths

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov")


def read_video(path: Path, filename: str, *, max_voxels: int, max_frames: int) -> sitk.Image:
    """The video's frames as a grey uint8 volume (z = frame index); refuses unreadable files.

    The stream's declared frame size (and frame count, where the container states one) is
    checked against the caps before a frame is decoded, and the running total as frames come.
    """
    frames: list[np.ndarray] = []
    voxels = 0
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise InvalidInput(
                    f"{filename!r} holds no video stream",
                    fields={"file": ["the file holds no video"]},
                )
            stream = container.streams.video[0]
            _check_declared(filename, stream, max_voxels=max_voxels, max_frames=max_frames)
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                grey = frame.to_ndarray(format="gray")
                if frames and grey.shape != frames[0].shape:
                    raise InvalidInput(
                        f"{filename!r} changes its frame size mid-stream",
                        fields={"file": ["the frame size changes mid-stream"]},
                    )
                voxels += grey.size
                if voxels > max_voxels or len(frames) >= max_frames:
                    raise _too_large(filename, max_voxels, max_frames)
                frames.append(grey)
    except av.FFmpegError as exc:
        reason = without_paths(str(exc), {str(path): filename})
        raise InvalidInput(
            f"{filename!r} could not be read as a video: {reason}",
            fields={"file": ["the file could not be read as a video"]},
        ) from exc
    if not frames:
        raise InvalidInput(
            f"{filename!r} could not be read as a video: it holds no frames",
            fields={"file": ["the video holds no frames"]},
        )
    image = sitk.GetImageFromArray(np.stack(frames).astype(np.uint8, copy=False))
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


def _check_declared(filename: str, stream: Any, *, max_voxels: int, max_frames: int) -> None:
    width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
    declared_frames = int(stream.frames or 0)  # 0: the container does not say
    if width * height > max_voxels or width * height * declared_frames > max_voxels:
        raise _too_large(filename, max_voxels, max_frames)
    if declared_frames > max_frames:
        raise _too_large(filename, max_voxels, max_frames)


def _too_large(filename: str, max_voxels: int, max_frames: int) -> InvalidInput:
    return InvalidInput(
        f"{filename!r} is too large: more than {max_frames} frames or {max_voxels} voxels",
        fields={"file": [f"at most {max_frames} frames and {max_voxels} voxels"]},
    )
