"""Classification: logits -> softmax -> top-k rows.

Row (README, "Output schema"): {"path": str, "top": [{"label", "index", "score"}, ...], "error": null}
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def top_k_rows(logits: np.ndarray, labels: list[str], k: int) -> list[dict]:
    probs = softmax(logits)
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        {"top": [{"label": labels[i] if i < len(labels) else str(i), "index": int(i),
                  "score": round(float(p[i]), 6)} for i in idx]}
        for p, idx in zip(probs, order)
    ]


def postprocessor(labels: list[str], k: int):
    return lambda outputs, batch: top_k_rows(outputs, labels, k)


def flatten(row: dict, k: int) -> dict:
    """The CSV form of a row: top-k as numbered columns."""
    flat = {"path": row["path"]}
    top = row.get("top") or []
    for j in range(k):
        t = top[j] if j < len(top) else {}
        flat[f"label_{j + 1}"] = t.get("label", "")
        flat[f"index_{j + 1}"] = t.get("index", "")
        flat[f"score_{j + 1}"] = t.get("score", "")
    flat["error"] = row.get("error") or ""
    return flat
