"""predict_image and the predict CLI under unusual input and output (issue 18, items 9 and 10)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from emoji_mirror.images import ImageReadError, read_image
from emoji_mirror.predict import predict_image

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("image", [None, [[0, 1], [2, 3]], 42])
def test_what_is_not_an_image_is_an_image_read_error(image):
    with pytest.raises(ImageReadError, match="takes a file path, a numpy array, a PIL image or a torch tensor"):
        predict_image(image)


@pytest.mark.parametrize("value", [float("nan"), -1, 1.5, "0.5", True])
def test_min_confidence_is_a_number_from_0_to_1(value):
    with pytest.raises(ValueError, match="min_confidence must be a number from 0 to 1"):
        predict_image(np.zeros((64, 64, 3), np.uint8), min_confidence=value)


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(pytest.raises(ImageReadError, read_image, fifo)), daemon=True)
    reader.start()
    reader.join(5)
    assert outcome and "not a regular file" in str(outcome[0].value)
    if reader.is_alive():  # unblock a reader stuck in open() so the test process can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.slow
def test_a_pil_image_and_a_torch_tensor_give_the_arrays_answer():
    rgb = skdata.astronaut()
    expected = predict_image(rgb)
    assert len(expected) == 1
    assert predict_image(Image.fromarray(rgb)) == expected
    assert predict_image(torch.from_numpy(rgb).permute(2, 0, 1)) == expected  # torchvision's C x H x W


@pytest.mark.slow
def test_a_full_stdout_is_one_error_line(tmp_path):
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "emoji_mirror.predict", str(photo)], cwd=REPO_ROOT, stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    assert done.returncode == 1
    assert "cannot write the results" in done.stderr and "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
