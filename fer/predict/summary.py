"""The few lines predict.py prints when it is done: what was predicted, with what, how fast, how well."""

from __future__ import annotations

import logging

from fer.predict.settings import PredictSettings, Scoring

log = logging.getLogger(__name__)


def describe_tta(scoring: Scoring, model_names: list[str], mirror_invariant: list[bool]) -> str:
    """The TTA views predict used: the mirror view is skipped for models that already average it (fer.tta)."""
    if not scoring.tta:
        return "off"
    views = "flip+shifts" if scoring.tta_shifts else "flip"
    skipped = [name for name, invariant in zip(model_names, mirror_invariant) if invariant]
    if not skipped:
        return views
    whose = "" if len(skipped) == len(model_names) else f" for {', '.join(skipped)}"
    return f"{views}; mirror view skipped{whose}: ten crops include it"


def print_summary(settings: PredictSettings, r) -> None:
    e = r.extra
    tta = describe_tta(settings.scoring, e["model_names"], e.get("mirror_invariant") or [False] * len(e["model_names"]))
    models = " + ".join(e["model_names"])
    if e.get("video"):
        what = (f"{e['faces']} face(s) in {e['frames_sampled']} of {e['frames_read']} frame(s) of {e['video']} "
                f"({e['tracks']} face track(s); {e['fps']:.1f} sampled frames/s"
                f"{'; stopped by Ctrl-C' if e['interrupted'] else ''})")
    elif settings.face_detect:
        what = f"{e['faces']} face(s) in {e['photos']} photo(s) ({e['no_face']} without a face; {e['detector']})"
    else:
        what = f"{r.rows} image(s) ({e['source']}, split {r.split})"
    lines = [f"predicted {what} with {models} on {e['device']} ({e['precision']}, tta {tta})"]
    total = max(sum(r.counts.values()), 1)
    lines.append("  " + ", ".join(f"{k} {v} ({100 * v / total:.1f}%)" for k, v in r.counts.items()))
    parts = ", ".join(f"{k} {v:.2f}s" for k, v in r.seconds.items() if k != "total")
    lines.append(f"  time {r.seconds['total']:.2f}s ({parts}); {r.images_per_s:.0f} images/s in the model")
    w = e.get("ensemble_weights")
    if w:
        mix = ", ".join(f"{name} {weight:.2f}" for name, weight in zip(w["members"], w["weights"]))
        if w["how"] == "val":
            accs = "/".join(f"{a:.4f}" for a in w["member_acc"])
            lines.append(f"  ensemble weights fitted on the val split ({w['n_val']} images): {mix}; val accuracy: "
                         f"members {accs}, equal weights {w['equal_acc']:.4f}, fitted {w['fitted_acc']:.4f}; "
                         f"mixture calibrated there: T={w['temperature']:.3f}, val ECE {w['ece_before']:.4f} -> "
                         f"{w['ece_after']:.4f}")
        else:
            lines.append(f"  ensemble weights (given): {mix}")
    if r.accuracy is not None:
        lines.append(f"  accuracy {r.accuracy:.4f}, macro-F1 {r.f1_macro:.4f}, ECE {r.ece:.4f} (split {r.split} has "
                     "labels)")
    if r.skipped:
        lines.append(f"  skipped {r.skipped} unreadable image(s), listed in {r.skipped_file}")
    if r.resized or r.color:
        lines.append(f"  converted on reading: {r.resized} resized to 48x48, {r.color} colour -> grayscale "
                     f"(counts over the {e.get('cache_images', '')} images of the cache entry)"
                     + ("; photos rather than face crops? face_detect=true finds and crops the faces first"
                        if r.resized and e.get("source") == "images" else ""))
    if e.get("annotated"):
        lines.append(f"  annotated copy: {settings.outputs.annotate_video}" if e.get("video")
                     else f"  annotated photos in {settings.outputs.annotate}")
    lines.append(f"wrote {r.output} ({r.rows} rows; columns {','.join(e['columns'][:2])}"
                 f"{',...' if len(e['columns']) > 2 else ''})")
    print("\n".join(lines), flush=True)
    for line in lines:
        log.debug("%s", line)
