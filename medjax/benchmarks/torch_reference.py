"""PyTorch reference for medjax's benchmarks on the same machine (PyTorch is not a dependency).

    pip install torch
    python -m medjax.benchmarks.torch_reference --models=cnn,resnet,sgan,rbm --batch_size=20 \\
        --image_size=50

The same networks and steps written in plain PyTorch, timed like `medjax.benchmarks.step`
(median ms/step over `--windows` windows of `--steps` steps after two warm-up steps):
- `cnn`, `resnet`: the paper's CNN and ResNet-50 (torchvision's topology), one Adam step (1e-4)
  on the cross-entropy.
- `sgan`: the semi-supervised GAN of `medjax.models.sgan`, one step of
  `medjax.train.sgan.train_step`: D on labelled + unlabelled + generated images (cross-entropy
  + softplus GAN terms), then G through the updated D on the non-saturating loss; Adam 2e-4,
  beta1 0.5 for both. Images/s counts the unlabelled batch.
- `rbm`: one CD-1 update of `medjax.train.rbm.cd_step` (momentum 0.9, weight decay 2e-4),
  image_size^2 visible x `--rbm_hidden` hidden units (2500 x 1500 at 50x50, as
  `medjax.benchmarks.rbm`); images/s is its samples/s.
Each model's parameter count is checked against medjax's. medjax augments images inside its
step (`--noaugment` turns that off there); this reference does not.
"""

from __future__ import annotations

import math
import statistics
import time

import jax
import jax.numpy as jnp
from absl import flags

from medjax import benchmarks, cli
from medjax.models import Discriminator, Generator, create_model

MODELS = ("cnn", "resnet", "sgan", "rbm")
LATENT_DIM, SGAN_FEATURES = 100, 128  # medjax's config.sgan defaults


def define_flags(fv) -> None:
  flags.DEFINE_list("models", "cnn,resnet", f"Models to time, from {', '.join(MODELS)}.",
                    flag_values=fv)
  flags.DEFINE_integer("batch_size", 20, "Images per step.", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("image_size", 50, "Image height and width (pixels).", lower_bound=8,
                       flag_values=fv)
  flags.DEFINE_integer("rbm_hidden", 1500, "Hidden units of the RBM.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("steps", 10, "Steps per timing window.", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("windows", 5, "Timing windows (the median is reported).", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("threads", 0, "torch.set_num_threads (0: PyTorch's default).",
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_bool("compile", False, "Wrap the step in torch.compile.", flag_values=fv)
  flags.DEFINE_string("out", None, "Write the results as JSON here.", flag_values=fv)


def _torch():
  return benchmarks.require("torch", "PyTorch", "torch")


# --- the networks ------------------------------------------------------------------------------

def resnet50(channels=1, classes=2):
  torch = _torch()
  nn = torch.nn

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
  torch = _torch()
  nn = torch.nn
  layers, cin = [], channels
  for f in (32, 64, 128, 256):
    # Padding 1 gives the output sizes of medjax's SAME padding (ceil(n / 2)) at every size.
    layers += [nn.Conv2d(cin, f, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = f
  with torch.no_grad():
    n = nn.Sequential(*layers)(torch.zeros(1, channels, image_size, image_size)).numel()
  return nn.Sequential(*layers, nn.Flatten(), nn.Linear(n, 256), nn.ReLU(),
                       nn.Linear(256, classes))


def sgan(channels=1, classes=2, image_size=50, features=SGAN_FEATURES, latent_dim=LATENT_DIM):
  """(generator, discriminator) as `medjax.models.sgan`: same layers, shapes, parameters."""
  torch = _torch()
  nn = torch.nn
  seed = math.ceil(image_size / 4)

  class Generator(nn.Module):
    def __init__(self):
      super().__init__()
      self.seed = nn.Linear(latent_dim, seed * seed * features)
      # kernel 4, stride 2, padding 1: exactly 2x the input, like flax's SAME ConvTranspose.
      self.up0 = nn.ConvTranspose2d(features, features, 4, 2, 1)
      self.up1 = nn.ConvTranspose2d(features, features, 4, 2, 1)
      self.out = nn.Conv2d(features, channels, 7, 1, 3)

    def forward(self, z):
      x = nn.functional.leaky_relu(self.seed(z), 0.2).view(-1, features, seed, seed)
      x = nn.functional.leaky_relu(self.up0(x), 0.2)
      x = nn.functional.leaky_relu(self.up1(x), 0.2)
      x = torch.tanh(self.out(x))
      top = (x.shape[2] - image_size) // 2
      return x[:, :, top:top + image_size, top:top + image_size]

  class Discriminator(nn.Module):
    def __init__(self):
      super().__init__()
      self.convs = nn.ModuleList(
          [nn.Conv2d(channels if i == 0 else features, features, 3, 2, 1) for i in range(3)])
      size = image_size
      for _ in range(3):
        size = (size + 1) // 2
      self.dropout = nn.Dropout(0.4)
      self.logits = nn.Linear(size * size * features, classes)

    def forward(self, x):
      for conv in self.convs:
        x = nn.functional.leaky_relu(conv(x), 0.2)
      return self.logits(self.dropout(x.flatten(1)))

  return Generator(), Discriminator()


def count_params(*modules) -> int:
  return sum(p.numel() for m in modules for p in m.parameters())


def medjax_param_count(name: str, image_size: int, channels: int = 1,
                       rbm_hidden: int = 1500) -> int:
  """Parameters of medjax's model `name` (shapes only, nothing is computed)."""
  if name == "rbm":
    v = image_size * image_size * channels
    return v * rbm_hidden + v + rbm_hidden
  image = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
  if name == "sgan":
    pairs = [(Generator(image_shape=(image_size, image_size, channels)),
              jax.ShapeDtypeStruct((1, LATENT_DIM), jnp.float32)),
             (Discriminator(num_classes=2), image)]
  else:
    pairs = [(create_model(name, num_classes=2), image)]
  total = 0
  for model, x in pairs:
    shapes = jax.eval_shape(lambda x, m=model: m.init(jax.random.key(0), x)["params"], x)
    total += sum(math.prod(a.shape) for a in jax.tree.leaves(shapes))
  return total


# --- the steps ---------------------------------------------------------------------------------

def supervised_step(name: str, batch: int, size: int):
  """(step, n_params) of one Adam step of the CNN or ResNet-50 on random data."""
  torch = _torch()
  model = resnet50() if name == "resnet" else cnn(image_size=size)
  model.train()
  opt = torch.optim.Adam(model.parameters(), 1e-4)
  x = torch.rand(batch, 1, size, size)
  y = torch.randint(0, 2, (batch,))
  loss_fn = torch.nn.CrossEntropyLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss

  return step, count_params(model)


def sgan_step(batch: int, size: int):
  """(step, n_params) of one SGAN step as `medjax.train.sgan.train_step` takes it."""
  torch = _torch()
  functional = torch.nn.functional
  gen, disc = sgan(image_size=size)
  gen.train()
  disc.train()
  g_opt = torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999))
  d_opt = torch.optim.Adam(disc.parameters(), 2e-4, betas=(0.5, 0.999))
  labelled = torch.rand(batch, 1, size, size) * 2 - 1
  unlabelled = torch.rand(batch, 1, size, size) * 2 - 1
  labels = torch.randint(0, 2, (batch,))
  g_params = list(gen.parameters())

  def step():
    fake = gen(torch.randn(batch, LATENT_DIM))
    logits = disc(torch.cat([labelled, unlabelled, fake.detach()]))
    lse = torch.logsumexp(logits, -1)
    d_loss = (functional.cross_entropy(logits[:batch], labels)
              + functional.softplus(-lse[batch:2 * batch]).mean()
              + functional.softplus(lse[2 * batch:]).mean())
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    # G through the updated D; only G's gradients are computed (medjax differentiates the
    # generated images, not D's parameters, in this half).
    g_loss = functional.softplus(-torch.logsumexp(disc(fake), -1)).mean()
    g_opt.zero_grad(set_to_none=True)
    g_loss.backward(inputs=g_params)
    g_opt.step()
    return d_loss, g_loss

  return step, count_params(gen, disc)


def rbm_step(batch: int, size: int, hidden: int):
  """(step, n_params) of one CD-1 update as `medjax.train.rbm.cd_step` (momentum, decay)."""
  torch = _torch()
  visible = size * size
  gen = torch.Generator().manual_seed(0)
  w = 0.01 * torch.randn(visible, hidden, generator=gen)
  b_v, b_h = torch.zeros(visible), torch.zeros(hidden)
  params = [w, b_v, b_h]
  velocity = [torch.zeros_like(p) for p in params]
  v0 = (torch.rand(batch, visible, generator=gen) < 0.3).float()
  lr, momentum, decay = 0.05, 0.9, 2e-4

  @torch.no_grad()
  def step():
    p_h0 = torch.sigmoid(v0 @ w + b_h)
    h0 = torch.bernoulli(p_h0)
    v1 = torch.sigmoid(h0 @ w.T + b_v)            # CD: the reconstruction's probabilities
    p_h1 = torch.sigmoid(v1 @ w + b_h)
    torch.bernoulli(p_h1)                          # the chain's sample, as medjax draws it
    grad_w = torch.cat([v0, v1]).T @ torch.cat([p_h0, -p_h1]) / batch
    grads = [grad_w - decay * w, (v0 - v1).mean(0), (p_h0 - p_h1).mean(0)]
    for p, m, g in zip(params, velocity, grads):
      m.mul_(momentum).add_(g, alpha=lr)
      p.add_(m)
    return w

  return step, sum(p.numel() for p in params)


def bench(name: str, batch: int, size: int, *, steps: int, windows: int, compile_: bool,
          rbm_hidden: int = 1500) -> dict:
  """Times one model's step; returns one result row."""
  torch = _torch()
  torch.manual_seed(0)
  if name == "sgan":
    step, n_params = sgan_step(batch, size)
  elif name == "rbm":
    step, n_params = rbm_step(batch, size, rbm_hidden)
  else:
    step, n_params = supervised_step(name, batch, size)
  expected = medjax_param_count(name, size, rbm_hidden=rbm_hidden)
  if n_params != expected:
    raise RuntimeError(f"{name}: {n_params:,} parameters in PyTorch, {expected:,} in medjax")
  if compile_:
    step = torch.compile(step)
  t = time.perf_counter()
  step()
  first = time.perf_counter() - t
  step()

  def window():
    for _ in range(steps):
      step()

  times = [w / steps for w in benchmarks.time_windows(window, windows)]
  med = statistics.median(times)
  return {"model": name, "batch_size": batch, "image_size": size, "params": n_params,
          "first_step_seconds": round(first, 2), "ms_per_step": round(med * 1e3, 3),
          "ms_per_step_min": round(min(times) * 1e3, 3),
          "ms_per_step_max": round(max(times) * 1e3, 3),
          "images_per_second": round(batch / med, 1)}


def main(argv=None) -> list[dict]:
  fv = cli.parse_flags(define_flags, argv, __doc__)
  models = benchmarks.parse_models(fv.models, MODELS)
  torch = _torch()
  if fv.threads:
    torch.set_num_threads(fv.threads)
  env = {"torch": torch.__version__, "threads": torch.get_num_threads(), **benchmarks.machine()}
  print(f"# torch {env['torch']}, {env['threads']} threads ({env['cpu']}), load average "
        f"{env['load_average'][0]:.1f}", flush=True)
  print(f"{'model':<8}{'batch':>6}{'size':>6}{'first s':>10}{'ms/step':>10}{'min-max':>16}"
        f"{'img/s':>11}{'params':>13}", flush=True)
  results = []
  for name in models:
    r = bench(name, fv.batch_size, fv.image_size, steps=fv.steps, windows=fv.windows,
              compile_=fv.compile, rbm_hidden=fv.rbm_hidden)
    results.append(r)
    spread = f"{r['ms_per_step_min']:.2f}-{r['ms_per_step_max']:.2f}"
    print(f"{name:<8}{r['batch_size']:>6}{r['image_size']:>6}{r['first_step_seconds']:>10.1f}"
          f"{r['ms_per_step']:>10.2f}{spread:>16}{r['images_per_second']:>11,.0f}"
          f"{r['params']:>13,}", flush=True)
  benchmarks.write_results(fv.out, env, define_flags, fv, results)
  return results


if __name__ == "__main__":
  cli.run(main)
