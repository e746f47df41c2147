"""PyTorch reference for `python -m medjax.bench` on the same machine (not a medjax dependency).

    python benchmarks/torch_reference.py --models=cnn,resnet --batch-size=20 --image-size=50

The same networks written in plain torch (ResNet-50 with torchvision's topology and parameter
count, the paper's CNN), the same Adam step and loss, the median ms/step over timing windows
after warm-up, printed like medjax.bench. Optional `--compile` uses torch.compile.
"""

import argparse
import statistics
import time

import torch
from torch import nn


class Bottleneck(nn.Module):
  def __init__(self, cin, width, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(width * 4)
    self.proj = None
    if stride != 1 or cin != width * 4:
      self.proj = nn.Sequential(nn.Conv2d(cin, width * 4, 1, stride, bias=False),
                                nn.BatchNorm2d(width * 4))

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = torch.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return torch.relu(y + (x if self.proj is None else self.proj(x)))


def resnet50(channels=1, classes=2):
  layers = [nn.Conv2d(channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(3, 2, 1)]
  cin = 64
  for i, blocks in enumerate((3, 4, 6, 3)):
    for j in range(blocks):
      layers.append(Bottleneck(cin, 64 * 2**i, 2 if i > 0 and j == 0 else 1))
      cin = 64 * 2**i * 4
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
  return nn.Sequential(*layers)


def cnn(channels=1, classes=2, image_size=50):
  layers, cin = [], channels
  for f in (32, 64, 128, 256):
    # padding 1 gives the same output sizes as medjax's SAME padding at 50x50 (FLOPs equal).
    layers += [nn.Conv2d(cin, f, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = f
  with torch.no_grad():
    n = nn.Sequential(*layers)(torch.zeros(1, channels, image_size, image_size)).numel()
  return nn.Sequential(*layers, nn.Flatten(), nn.Linear(n, 256), nn.ReLU(), nn.Linear(256, classes))


def bench(name, batch, size, steps, windows, compile_):
  torch.manual_seed(0)
  model = resnet50() if name == "resnet" else cnn(image_size=size)
  model.train()
  opt = torch.optim.Adam(model.parameters(), 1e-4)
  x = torch.rand(batch, 1, size, size)
  y = torch.randint(0, 2, (batch,))
  loss_fn = nn.CrossEntropyLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss

  if compile_:
    step = torch.compile(step)
  t = time.perf_counter()
  step()
  first = time.perf_counter() - t
  step()
  times = []
  for _ in range(windows):
    t = time.perf_counter()
    for _ in range(steps):
      step()
    times.append((time.perf_counter() - t) / steps)
  med = statistics.median(times)
  print(f"{name:<8}{batch:>6}{size:>6}{first:>12.1f}{med * 1e3:>10.2f}"
        f"{min(times) * 1e3:>9.2f}-{max(times) * 1e3:<8.2f}{batch / med:>10,.0f}", flush=True)


if __name__ == "__main__":
  p = argparse.ArgumentParser()
  p.add_argument("--models", default="cnn,resnet")
  p.add_argument("--batch-size", type=int, default=20)
  p.add_argument("--image-size", type=int, default=50)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--windows", type=int, default=5)
  p.add_argument("--compile", action="store_true")
  args = p.parse_args()
  print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads")
  print(f"{'model':<8}{'batch':>6}{'size':>6}{'first s':>12}{'ms/step':>10}{'min-max':>18}{'img/s':>10}")
  for m in args.models.split(","):
    bench(m, args.batch_size, args.image_size, args.steps, args.windows, args.compile)
