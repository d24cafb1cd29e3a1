"""A slow fake recommender of the real shape for the serving-limit tests (no tests here)."""

from __future__ import annotations

import threading
import time

import numpy as np

from ktup.data.dataset import IdMap


class _Model:
    name = "ktup"
    explains = True


class _Dataset:
    name = "fake"

    def __init__(self, users, items):
        self.users = IdMap(list(users), "user")
        self.items = IdMap(list(items), "item")


class SlowRecommender:
    """``recommend`` sleeps ``per_explanation`` seconds per explanation (holding the GIL-free
    sleep like real model work would hold the model) and counts the users it served."""

    def __init__(self, users=None, items=None, per_explanation: float = 0.0, per_user: float = 0.0):
        self.model = _Model()
        self.dataset = _Dataset(users or [f"u{i}" for i in range(6)], items or [str(100 + i) for i in range(9)])
        self.info = {"run_id": "fake", "model": "ktup", "dataset": "fake"}
        self.per_explanation, self.per_user = per_explanation, per_user
        self.users_served = 0
        self.calls = 0
        self._count = threading.Lock()
        rng = np.random.default_rng(0)
        self.scores = rng.normal(size=(len(self.dataset.users), len(self.dataset.items)))

    def recommend(self, users, k=10, filter_seen=True, exclude=None, explain=False):
        out = []
        self.calls += 1
        for u in users:
            ui = self.dataset.users.index(u)
            order = np.argsort(-self.scores[ui], kind="stable")[:k]
            recs = [{"item": self.dataset.items.token(int(i)), "title": f"Item {int(i)} " + "x" * 20,
                     "score": float(self.scores[ui, i]), "rank": r} for r, i in enumerate(order, 1)]
            if explain:
                for rec in recs:
                    rec["explanation"] = self.explain(u, rec["item"])
            time.sleep(self.per_user)
            with self._count:
                self.users_served += 1
            out.append(recs)
        return out

    def explain(self, user, item):
        time.sleep(self.per_explanation)
        return {"relation": "genre", "weights": [0.5, 0.25, 0.25], "user": user, "item": item}
