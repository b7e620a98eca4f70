"""Videos (mp4, avi, mov, anything PyAV / FFmpeg reads) as grey-level volumes.

Each decoded frame becomes one slice of a (frames, height, width) uint8 volume holding the
frames' luminance (FFmpeg's "gray" conversion: the Y of BT.601, full range). The volume's grid is
the trivial one: spacing 1 (pixel / frame), origin 0, identity direction; the series generated
from it is an ultrasound series of single-frame Secondary Capture instances, one per video frame
(InstanceNumber = frame number), so the viewer addresses frames like slices.
"""

from pathlib import Path

import av
import numpy as np
import SimpleITK as sitk

from annotator.errors import InvalidInput

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov")


def read_video(path: Path, filename: str, *, max_voxels: int) -> sitk.Image:
    """The video's frames as a grey uint8 volume (z = frame index); refuses unreadable files."""
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
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                grey = frame.to_ndarray(format="gray")
                if frames and grey.shape != frames[0].shape:
                    raise InvalidInput(f"{filename!r} changes its frame size mid-stream")
                voxels += grey.size
                if voxels > max_voxels:
                    raise InvalidInput(f"{filename!r} has more than {max_voxels} voxels")
                frames.append(grey)
    except av.FFmpegError as exc:
        raise InvalidInput(
            f"{filename!r} could not be read as a video: {exc}",
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
