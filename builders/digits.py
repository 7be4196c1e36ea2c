"""Training LeNet-5 on the handwritten digits that scikit-learn ships (nothing is downloaded).

The 8x8 images (ink 0..16) are rendered exactly as a user's PNG would be: scaled to 0..255,
resized to 32x32 with Pillow's bilinear filter, then divided by 255. So an image saved with
:func:`render` and sent to the server is preprocessed into the very tensor the network was
trained and evaluated on. A fixed, stratified 20% is held out and never trained on.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

SIZE = 32
HELD_OUT_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass(frozen=True)
class DigitsSplit:
    train_images: np.ndarray  # uint8, (n, 32, 32)
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def render(image8x8: np.ndarray) -> Image.Image:
    """One scikit-learn digit (values 0..16) as a 32x32 grey Pillow image."""
    pixels = np.clip(np.rint(image8x8 * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="L").resize((SIZE, SIZE), Image.Resampling.BILINEAR)


def load_split() -> DigitsSplit:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.stack([np.asarray(render(img)) for img in digits.images])
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=HELD_OUT_FRACTION, random_state=SPLIT_SEED, stratify=digits.target
    )
    return DigitsSplit(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64))


def write_held_out(folder: Path, count: int | None = None) -> list[Path]:
    """Save the held-out digits (never trained on) as 32x32 grey PNG files named
    ``NNN_digit-D.png``, D the true digit; return their paths in held-out order."""
    split = load_split()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (pixels, label) in enumerate(zip(split.test_images[:count], split.test_labels[:count], strict=True)):
        path = folder / f"{i:03d}_digit-{label}.png"
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(path)
    return paths


def to_tensor(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 (n, 32, 32) -> normalised float (n, 1, 32, 32), as the server's preprocessing does."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return (x - mean) / std


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean: float, std: float) -> float:
    model.eval()
    with torch.no_grad():
        predicted = model(to_tensor(images, mean, std)).argmax(1).numpy()
    return float((predicted == labels).mean())


def _shift(batch: torch.Tensor, generator: torch.Generator, most: int = 2) -> torch.Tensor:
    """Translate each image by up to ``most`` pixels (handwriting is never centred exactly)."""
    padded = nn.functional.pad(batch, (most,) * 4, value=float(batch.min()))
    out = torch.empty_like(batch)
    offsets = torch.randint(0, 2 * most + 1, (len(batch), 2), generator=generator).tolist()
    for i, (dy, dx) in enumerate(offsets):
        out[i] = padded[i, :, dy : dy + SIZE, dx : dx + SIZE]
    return out


def train(model: nn.Module, split: DigitsSplit, mean: float, std: float, *, epochs: int = 30, seed: int = 0) -> float:
    """Train ``model`` in place with Adam; return the held-out accuracy."""
    torch.manual_seed(seed)
    x = to_tensor(split.train_images, mean, std)
    y = torch.from_numpy(split.train_labels)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(64):
            optimiser.zero_grad()
            loss_fn(model(_shift(x[idx], generator)), y[idx]).backward()
            optimiser.step()
        scheduler.step()
    return accuracy(model, split.test_images, split.test_labels, mean, std)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the held-out digits as PNG files, to send to the server.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=None, help="how many (default: all 360)")
    args = parser.parse_args()
    paths = write_held_out(args.folder, args.count)
    print(f"wrote {len(paths)} held-out digits to {args.folder}/ (the name ends with the true digit)")


if __name__ == "__main__":
    main()
