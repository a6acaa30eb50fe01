import torch

# Two cores on CI: keep intra-op threads bounded so parallel workers don't oversubscribe.
torch.set_num_threads(1)
