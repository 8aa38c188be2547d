"""The CHTC multi-GPU example's single-GPU model.py, in its structure: a Net of 6 conv + 3 linear
layers, module-level data loaders with 4 workers, train()/test() functions, Adam, timing prints.
CPU-runnable here: CIFAR-shaped random data instead of the download, channels divided by WIDTH."""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

WIDTH = 16          # the seed model at WIDTH = 1 (141 M parameters); 16: a few thousand
BATCH = 64 // 4
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 6
MODE = sys.argv[2] if len(sys.argv) > 2 else None
LAYERWISE = MODE == "layerwise"     # four/model.py: every conv/linear layer in its own nn.DataParallel
DP_IDS = [int(i) for i in MODE.split(",")] if MODE and not LAYERWISE else None   # e.g. 0,0: two/model.py's DataParallel
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

trainset = TensorDataset(torch.randn(STEPS * BATCH, 3, 32, 32), torch.randint(0, 10, (STEPS * BATCH,)))
testset = TensorDataset(torch.randn(2 * BATCH, 3, 32, 32), torch.randint(0, 10, (2 * BATCH,)))
trainloader = DataLoader(trainset, batch_size=BATCH, shuffle=True, num_workers=1)
testloader = DataLoader(testset, batch_size=BATCH, shuffle=False, num_workers=0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        c = [max(1, n // WIDTH) for n in (48, 96, 192, 256, 512, 1024)]
        self.conv1 = nn.Conv2d(3, c[0], 3, padding=1)
        self.conv2 = nn.Conv2d(c[0], c[1], 3, padding=1)
        self.conv3 = nn.Conv2d(c[1], c[2], 3, padding=1)
        self.conv4 = nn.Conv2d(c[2], c[3], 3, padding=1)
        self.conv5 = nn.Conv2d(c[3], c[4], 3, padding=1)
        self.conv6 = nn.Conv2d(c[4], c[5], 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(c[5] * 8 * 8, 2048 // WIDTH)
        self.fc2 = nn.Linear(2048 // WIDTH, 64 // WIDTH)
        self.fc3 = nn.Linear(64 // WIDTH, 10)
        if LAYERWISE:
            for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc1", "fc2", "fc3"):
                setattr(self, name, nn.DataParallel(getattr(self, name)))

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.dropout1(self.pool(F.relu(self.conv2(x))))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = F.relu(self.conv5(x))
        x = self.dropout1(self.pool(F.relu(self.conv6(x))))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(F.relu(self.fc2(x)))
        return self.fc3(x)


def train(model, device, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data), target)
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: loss {loss.item():.4f}")


def test(model, device, test_loader):
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            pred = model(data.to(device)).argmax(1)
            correct += (pred == target.to(device)).sum().item()
    print(f"accuracy {correct / len(test_loader.dataset):.3f}")


model = Net().to(device)
if DP_IDS is not None:
    model = nn.DataParallel(model, device_ids=DP_IDS)
optimizer = optim.Adam(model.parameters(), lr=1e-3)
start = time.time()
train(model, device, trainloader, optimizer, 1)
test(model, device, testloader)
print(f"total 1-GPU epochs time = {time.time() - start:.2f}")
