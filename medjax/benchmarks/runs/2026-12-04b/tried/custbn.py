import functools, sys
sys.argv_backup = sys.argv
import jax, jax.numpy as jnp
from flax import linen as nn
from medjax.models import resnet
sys.path.insert(0, "/root/medjax-runs/s10")
import importlib.util
spec = importlib.util.spec_from_file_location("bnm", "/root/medjax-runs/s10/bnmicro_lib.py"); bnm = importlib.util.module_from_spec(spec); spec.loader.exec_module(bnm)
BN = bnm.BN
class Bottleneck(nn.Module):
  width: int
  strides: int = 1
  dtype: object = jnp.float32
  conv_impl: str = "auto"
  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(resnet.Conv, dtype=self.dtype, impl=self.conv_impl)
    norm = functools.partial(BN, use_running_average=not train, momentum=0.9, epsilon=1e-5, name=None)
    s = (self.strides, self.strides)
    y = norm(relu=True, name="BatchNorm_0")(conv(self.width, (1, 1), padding="VALID", name="Conv_0")(x))
    y = norm(relu=True, name="BatchNorm_1")(conv(self.width, (3, 3), s, ((1, 1), (1, 1)), name="Conv_1")(y))
    y = conv(self.width * 4, (1, 1), padding="VALID", name="Conv_2")(y)
    if x.shape[-1] != self.width * 4 or self.strides != 1:
      x = norm(name="proj_norm")(conv(self.width * 4, (1, 1), s, "VALID", name="proj_conv")(x))
    return norm(relu=True, name="BatchNorm_2")(y, residual=x)
resnet.Bottleneck = Bottleneck
