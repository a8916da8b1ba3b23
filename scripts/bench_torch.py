#!/usr/bin/env python3
"""MeasureVAE training throughput in PyTorch, on the batches `arvae-trainer bench --export` wrote.

The same model as core/src/model (docs/architecture.md §5, §6): Embedding(132, 10) -> 2-layer
bidirectional GRU(128, dropout 0.5) -> heads Linear(512, 256) SELU Linear(256, 32) for mean and
log-std; z = mu + exp(log_std) * eps; beat GRU (2 layers, 4 steps, learned constant input,
hidden SELU(Linear(32, 256))); tick GRU (2 layers, 6 ticks per beat, hidden reset per beat to
SELU(Linear(128, 256)) of the beat output, input [embedding(previous token) ++
SELU(Linear(128, 128)) of the beat output], learned start input); output Linear(128, 132);
loss = CE + 0.001 KL + sum of AR over 4 dims (delta 10); Adam lr 1e-4. Teacher forcing follows
the exported coin per batch; greedy argmax otherwise.

PyTorch is given its best shape: with teacher forcing the tick GRU runs as one nn.GRU call over
the 4 x B beat sequences of 6 ticks (beats are independent once the beat RNN has run); greedy
decoding calls it tick by tick.

Usage: python scripts/bench_torch.py batches.npz [--threads 2]
Needs torch and numpy (e.g. a venv outside the repository; never in CI).
"""

import argparse
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

V, E, H, L, Z, HH = 132, 10, 128, 2, 32, 256


class MeasureVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc_emb = nn.Embedding(V, E)
        self.enc_rnn = nn.GRU(E, H, L, batch_first=True, bidirectional=True, dropout=0.5)
        self.mean = nn.Sequential(nn.Linear(2 * L * H, HH), nn.SELU(), nn.Linear(HH, Z))
        self.log_std = nn.Sequential(nn.Linear(2 * L * H, HH), nn.SELU(), nn.Linear(HH, Z))
        self.z_to_beat = nn.Linear(Z, L * H)
        self.beat_input = nn.Parameter(torch.zeros(1, 1))
        self.beat_rnn = nn.GRU(1, H, L, batch_first=True, dropout=0.5)
        self.beat_to_tick_hidden = nn.Linear(H, L * H)
        self.beat_to_tick_input = nn.Linear(H, H)
        self.dec_emb = nn.Embedding(V, E)
        self.start_input = nn.Parameter(torch.zeros(E))
        self.tick_rnn = nn.GRU(E + H, H, L, batch_first=True, dropout=0.5)
        self.output = nn.Linear(H, V)
        for name, p in self.named_parameters():
            if p.dim() == 2 and "beat_input" not in name:
                nn.init.xavier_normal_(p)

    def forward(self, tokens, teacher):
        b = tokens.shape[0]
        _, h_n = self.enc_rnn(self.enc_emb(tokens))  # (2L, B, H): l0f, l0b, l1f, l1b
        state = h_n.transpose(0, 1).reshape(b, 2 * L * H)
        mu, log_std = self.mean(state), self.log_std(state)
        z = mu + log_std.exp() * torch.randn_like(mu)
        h0 = F.selu(self.z_to_beat(z)).view(b, L, H).transpose(0, 1).contiguous()
        beats, _ = self.beat_rnn(self.beat_input.expand(b, 4, 1), h0)  # (B, 4, H)
        th = F.selu(self.beat_to_tick_hidden(beats))  # (B, 4, L*H)
        ctx = F.selu(self.beat_to_tick_input(beats))  # (B, 4, H)
        if teacher:
            prev = self.dec_emb(tokens[:, :-1])  # (B, 23, E)
            prev = torch.cat([self.start_input.expand(b, 1, E), prev], 1).view(b, 4, 6, E)
            x = torch.cat([prev, ctx.unsqueeze(2).expand(b, 4, 6, H)], 3).view(b * 4, 6, E + H)
            h = th.reshape(b * 4, L, H).transpose(0, 1).contiguous()
            out, _ = self.tick_rnn(x, h)  # (4B, 6, H)
            logits = self.output(out).view(b, 24, V)
        else:
            logits, prev = [], self.start_input.expand(b, E)
            for beat in range(4):
                h = th[:, beat].reshape(b, L, H).transpose(0, 1).contiguous()
                for _ in range(6):
                    x = torch.cat([prev, ctx[:, beat]], 1).unsqueeze(1)
                    out, h = self.tick_rnn(x, h)
                    lg = self.output(out[:, 0])
                    logits.append(lg)
                    prev = self.dec_emb(lg.detach().argmax(-1))
            logits = torch.stack(logits, 1)
        return logits, mu, log_std, z


def loss_fn(logits, tokens, mu, log_std, z, attrs):
    ce = F.cross_entropy(logits.reshape(-1, V), tokens.reshape(-1))
    kl = (0.5 * ((2 * log_std).exp() + mu * mu - 1) - log_std).sum(-1).mean()
    ar = 0
    for d in range(4):
        dz = z[:, d].unsqueeze(1) - z[:, d].unsqueeze(0)
        da = (attrs[:, d].unsqueeze(1) - attrs[:, d].unsqueeze(0)).sign()
        ar = ar + ((10.0 * dz).tanh() - da).abs().mean()
    return ce + 0.001 * kl + 1.0 * ar


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("npz")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    d = np.load(a.npz)
    batch, warmup, steps = (int(x) for x in d["config"])
    tokens = torch.from_numpy(d["tokens"]).long()
    attrs = torch.from_numpy(d["attributes"]).float()
    coins = [bool(c) for c in d["teacher_forcing"]]
    model = MeasureVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(warmup + steps):
        if i == warmup:
            t0, c0 = time.perf_counter(), time.process_time()
        tk, at = tokens[i * batch:(i + 1) * batch], attrs[i * batch:(i + 1) * batch]
        logits, mu, log_std, z = model(tk, coins[i])
        loss = loss_fn(logits, tk, mu, log_std, z, at)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    secs = time.perf_counter() - t0
    cpu = time.process_time() - c0
    load = " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "?"
    print(
        f"train pytorch: {steps * batch / secs:.1f} measures/s ({secs / steps:.3f} s/step, {cpu / steps:.3f} CPU s/step, batch {batch}, "
        f"{a.threads} threads, torch {torch.__version__}, last loss {loss.item():.4f}, load average {load})"
    )


if __name__ == "__main__":
    main()
