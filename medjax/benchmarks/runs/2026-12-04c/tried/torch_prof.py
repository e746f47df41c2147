import sys, torch, collections
sys.path.insert(0, '/work/main')
from medjax.benchmarks import torch_reference as tr
torch.set_num_threads(2)
size = int(sys.argv[1]); which = sys.argv[2] if len(sys.argv) > 2 else 'resnet'
step, _ = tr.supervised_step('resnet', 20, size) if which == 'resnet' else tr.sgan_step(20, size)
for _ in range(3): step()
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU]) as prof:
  for _ in range(3): step()
tot = collections.Counter()
rows = []
for e in prof.key_averages():
  rows.append((e.self_cpu_time_total / 3 / 1e3, e.key, e.count // 3))
rows.sort(reverse=True)
s = sum(r[0] for r in rows)
print('total self ms/step %.1f' % s)
for r in rows[:30]: print('%8.1f  %-50s x%d' % r)
