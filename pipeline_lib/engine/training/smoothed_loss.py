"""Caffe's displayed training loss: the mean of the last `average_loss` iterations' losses."""

from __future__ import annotations


class SmoothedLoss:
    """The running mean Caffe's Solver::UpdateSmoothedLoss keeps, in its arithmetic order.

    Caffe restarts it with every Step; `state()`/`restore()` carry it across
    an exact resume instead.
    """

    def __init__(self, average: int, start: int = 0):
        self.average = average
        self.losses: list[float] = []
        self.value = 0.0
        self.start = start

    def update(self, loss: float, iteration: int) -> None:
        if len(self.losses) < self.average:
            self.losses.append(loss)
            n = len(self.losses)
            self.value = (self.value * (n - 1) + loss) / n
        else:
            idx = (iteration - self.start) % self.average
            self.value += (loss - self.losses[idx]) / self.average
            self.losses[idx] = loss

    def state(self) -> dict:
        return {"losses": list(self.losses), "smoothed_loss": self.value, "start": self.start}

    def restore(self, state: dict) -> None:
        self.losses = [float(v) for v in state["losses"]]
        self.value = float(state["smoothed_loss"])
        self.start = int(state["start"])
