"""Classification: logits -> softmax -> top-k rows.

Row (README, "Output schema"): {"path": str, "top": [{"label", "index", "score"}, ...], "error": null}
"""

from __future__ import annotations

import numpy as np

from visiontool.tasks import Task


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


class Classify(Task):
    name = "classify"
    fields = ("top",)
    export_precisions = ("fp32", "fp16", "int8-dynamic", "int8-static")

    def __init__(self, top_k: int = 5) -> None:
        self.top_k = top_k

    def postprocess(self, outputs, batch, info) -> list[dict]:
        return top_k_rows(outputs[0], info.labels, self.top_k)  # the first output is the answer

    def csv_columns(self) -> list[str]:
        return list(flatten({"path": ""}, self.top_k))

    def csv_rows(self, row: dict) -> list[dict]:
        return [flatten(row, self.top_k)]

    def headline(self, row: dict) -> str | None:
        return row["top"][0]["label"]

    def export_outputs(self, info) -> dict[str, str]:
        return {"logits": "softmax over labels gives scores"}

    def compare(self, pairs, info, precision: str, min_agreement: float | None) -> dict:
        from visiontool.export.verify import FP32_MAX_ABS_DIFF, MIN_AGREEMENT

        want = np.concatenate([w[0] for w, _, _ in pairs])
        got = np.concatenate([g[0] for _, g, _ in pairs])
        counted = np.concatenate([np.full(len(w[0]), c) for w, _, c in pairs])  # each image once
        diff = float(np.abs(got.astype(np.float64) - want).max())
        agree = float(np.mean(got[counted].argmax(1) == want[counted].argmax(1)))
        if precision == "fp32":
            return {"max_abs_diff": diff, "top1_agreement": agree, "passed": diff <= FP32_MAX_ABS_DIFF,
                    "criterion": f"fp32: max |diff| <= {FP32_MAX_ABS_DIFF:g}"}
        need = MIN_AGREEMENT[precision] if min_agreement is None else min_agreement
        return {"max_abs_diff": diff, "top1_agreement": agree, "passed": agree >= need,
                "criterion": f"{precision}: top-1 agreement >= {need:.0%}"}

    def table(self, rows, info):
        from rich.table import Table

        from visiontool.sources import short_path

        more = self.top_k > 1
        table = Table("file", "label", "score", *(["next"] if more else []),
                      title=f"{info.extra.get('name') or info.arch} ({info.weights_source})")
        for r in rows:
            name = short_path(r["path"])
            if r["error"]:
                table.add_row(name, "[red]error[/]", "", r["error"])
                continue
            best, rest = r["top"][0], r["top"][1:]
            extra = [", ".join(f"{t['label']} {t['score']:.3f}" for t in rest)] if more else []
            table.add_row(name, best["label"], f"{best['score']:.3f}", *extra)
        return table
