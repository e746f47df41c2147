import resource, sys, time
sys.path.insert(0, '/work/main')
import torch
from medjax.benchmarks import torch_reference as tr
torch.set_num_threads(2)
step, _ = tr.supervised_step('resnet', 20, int(sys.argv[1]))
for _ in range(3): step()
r0 = resource.getrusage(resource.RUSAGE_SELF); t = time.perf_counter()
for _ in range(5): step()
r1 = resource.getrusage(resource.RUSAGE_SELF)
print('torch ms/step %.1f minor faults/step %d' % ((time.perf_counter() - t) / 5 * 1e3, (r1.ru_minflt - r0.ru_minflt) / 5))
