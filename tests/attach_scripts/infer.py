"""A user's inference script: no optimizer ever steps."""
import torch
from torch import nn

model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).eval()
with torch.no_grad():
    for _ in range(20):
        model(torch.randn(32, 64))
print("inference done")
