"""The study of issue 10: the papers' tables at small scale on Fashion-MNIST, resumable.

    python benchmarks/study.py list                 # the tables, their commands and how far they are
    nice -n 10 python benchmarks/study.py run       # every table, in priority order (continues where it stopped)
    python benchmarks/study.py run t1_byol fig4_se  # some tables
    python benchmarks/study.py report               # docs/results.md from runs/study/*

Each table is one ``stsmooth sweep`` command with its own folder ``runs/study/<id>``
(src/stsmooth/training/sweep.py): a finished run is skipped and an interrupted one
resumed, so running this script again continues the study. ``report`` reads the
run folders only (results.json, metrics.csv), so it also works on a half-finished
study; a table without finished runs says "not yet run in this session", never a number.

Every wall time ``report`` prints is the sum of the runs' own ``seconds``; the
driver also records the 1-minute load average before and after each sweep
(``runs/study/<id>/study_log.jsonl``), because on a shared 2-core machine the
same run can take 50 times longer under load.

Paper references: 000 = Spatial Ensemble / STS (Tables 1, 2, 4, 6, Figs. 3, 4),
003 = EMAN (Tables 1, 8), 004 = Mean Teacher (Tables 1-2).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = Path("runs/study")
RESULTS = Path("docs/results.md")
NOT_RUN = "not yet run in this session"

#: BYOL / MoCo on Fashion-MNIST: the digits recipes with a 28x28 CNN and a short budget (tuned, not paper):
#: 150 steps x 128 images (19,200 images, two views each), kNN (k=20) of the teacher on the 10,000 test
#: images against a bank of 5,000 training images, and the random network's kNN as reference (init).
SSL_FASHION = ["data.name=fashion_mnist", "model.name=fmnist_cnn", "augment.flip=true",
               "augment.crop_scale=[0.5,1.0]", "optim.batch_size=128", "optim.steps_per_epoch=30",
               "optim.epochs=5", "optim.warmup_epochs=0", "eval.every_epochs=5", "eval.bank_size=5000",
               "eval.at_start=true", "progress=false", "export=false"]
SSL_BUDGET = ("150 steps x 128 images (19,200 images, 2 views), fmnist_cnn at the digits recipes' width 8; kNN bank "
              "5,000, test 10,000")


#: the same at 10x the steps (1500 x 128 images), where BYOL does move off the random network (seed 0, TMA: 63.7 ->
#: 67.9 % kNN, measured 2026-11-27), evaluated every 500 steps; ~1 min per run on one core
SSL_LONG = [{"optim.steps_per_epoch": "optim.steps_per_epoch=100", "optim.epochs": "optim.epochs=15"}.get(
    o.split("=")[0], o) for o in SSL_FASHION]
SSL_LONG_BUDGET = ("1500 steps x 128 images (192,000 images, 2 views), fmnist_cnn at the digits recipes' width 8; kNN "
                   "bank 5,000, test 10,000")


def _rules(m: float, p: float, schedule: str) -> list[list[str]]:
    """none / SE / TMA / STS of 000 Table 1-2, and TMA at STS's expected horizon m' = 1 - (1-p)(1-m) (issue 10
    item 8): under STS a unit moves with weight (1-p)(1-m) per step on average."""
    matched = round(1 - (1 - p) * (1 - m), 6)
    return [["none", "teacher.momentum=0", "teacher.preserve_prob=0", "teacher.momentum_schedule=constant"],
            ["SE", "teacher.momentum=0", f"teacher.preserve_prob={p}", "teacher.momentum_schedule=constant"],
            ["TMA", f"teacher.momentum={m}", "teacher.preserve_prob=0", f"teacher.momentum_schedule={schedule}"],
            ["STS", f"teacher.momentum={m}", f"teacher.preserve_prob={p}", f"teacher.momentum_schedule={schedule}"],
            ["TMA_matched", f"teacher.momentum={matched}", "teacher.preserve_prob=0",
             f"teacher.momentum_schedule={schedule}"]]


@dataclasses.dataclass
class Table:
    """One study item: one ``stsmooth sweep`` command and how to show its results."""

    id: str
    title: str
    claim: str
    recipe: str
    overrides: list[str]
    seeds: list[int]
    budget: str
    variants: list[list[str]] = dataclasses.field(default_factory=list)
    grid: list[str] = dataclasses.field(default_factory=list)
    seed_keys: list[str] = dataclasses.field(default_factory=list)
    metrics: tuple[str, ...] = ("init.knn_top1", "teacher.knn_top1", "student.knn_top1", "teacher.linear_top1")
    curves: bool = False  # also show param/output change per evaluation (000 Fig. 3) from metrics.csv
    extra: list[str] | None = None  # a second command whose output is kept next to the sweep
    probe: bool = False  # also a linear probe of each run's teacher (stsmooth eval linear -> RUN/linear.json)
    reading: str = ""

    @property
    def out(self) -> Path:
        return STUDY / self.id

    def argv(self) -> list[str]:
        argv = ["stsmooth", "sweep", self.recipe, *self.overrides]
        for v in self.variants:
            argv += ["--variant", *v]
        for g in self.grid:
            argv += ["--grid", g]
        argv += ["--seeds", *map(str, self.seeds)]
        if self.seed_keys:
            argv += ["--seed-keys", *self.seed_keys]
        return argv + ["--out", str(self.out)]


SEMI_METRICS = ("teacher.top1", "student.top1")

TABLES = [
    Table("t1_byol", "000 Tables 1-2 (BYOL): none / SE / TMA / STS, and TMA at STS's horizon",
          "SE alone avoids the collapse of no smoothing; STS beats TMA (000 Table 1: BYOL 63.2 -> SE 72.3 vs "
          "TMA 72.2; Table 2: STS +0.4 to +1.0 over TMA)",
          "byol_digits", SSL_FASHION, [0, 1, 2], SSL_BUDGET, variants=_rules(0.9, 0.7, "cosine"), probe=True),
    Table("t1_byol_long", "000 Tables 1-2 (BYOL) at 10x the steps: none / SE / TMA / STS, and TMA at STS's horizon",
          "as t1_byol", "byol_digits", SSL_LONG, [0, 1, 2], SSL_LONG_BUDGET, variants=_rules(0.9, 0.7, "cosine"),
          probe=True),
    Table("t1_moco", "000 Tables 1-2 (MoCo v2): none / SE / TMA / STS, and TMA at STS's horizon",
          "as for BYOL; MoCo without a momentum encoder degrades (000 Table 1)",
          "moco_digits", SSL_FASHION, [0, 1, 2], SSL_BUDGET, variants=_rules(0.95, 0.5, "constant"), probe=True),
    Table("fig4_heatmap", "000 Fig. 4: BYOL teacher kNN over p x m (constant m)",
          "accuracy rises with p at m=0 and STS (p>0, m>0) is best near p=0.7, m=0.99 (000 Fig. 4)",
          "byol_digits", [*SSL_FASHION, "teacher.momentum_schedule=constant"], [0], SSL_BUDGET,
          grid=["teacher.preserve_prob=0,0.1,0.3,0.5,0.7,0.9", "teacher.momentum=0,0.9,0.99"]),
    Table("fig4_heatmap_long", "000 Fig. 4 at 10x the steps: BYOL teacher kNN over p x m (constant m)",
          "as fig4_heatmap", "byol_digits", [*SSL_LONG, "teacher.momentum_schedule=constant"], [0], SSL_LONG_BUDGET,
          grid=["teacher.preserve_prob=0,0.1,0.3,0.5,0.7,0.9", "teacher.momentum=0,0.9,0.99"]),
    Table("fig4_se", "000 Fig. 4: SE alone (m=0) over p, p=0.99 included",
          "SE improves with p up to ~0.9 and fails when the teacher barely moves (p=0.99)",
          "byol_digits", [*SSL_FASHION, "teacher.momentum=0", "teacher.momentum_schedule=constant"], [0, 1, 2],
          SSL_BUDGET, grid=["teacher.preserve_prob=0,0.1,0.3,0.5,0.7,0.9,0.99"]),
    Table("t4_granularity", "000 Table 4: SE and STS at tensor / layer / channel / neuron granularity",
          "granularity matters little for accuracy; finer units cost more time per update (000 Table 4)",
          "byol_digits", SSL_FASHION, [0], SSL_BUDGET,
          variants=[["SE", "teacher.momentum=0", "teacher.preserve_prob=0.7", "teacher.momentum_schedule=constant"],
                    ["STS", "teacher.momentum=0.9", "teacher.preserve_prob=0.7",
                     "teacher.momentum_schedule=cosine"]],
          grid=["teacher.granularity=tensor,layer,channel,neuron"],
          extra=[sys.executable, "benchmarks/teacher_update.py", "--clock", "process", "--stat", "min",
                 "--repeats", "5"]),
    Table("fig3_smoothness", "000 Fig. 3: teacher parameter and output change between epochs",
          "SE and STS teachers change less between epochs than the student-copy (none), like TMA (000 Fig. 3)",
          "byol_digits", [*SSL_FASHION, "eval.every_epochs=1"], [0], SSL_BUDGET + "; evaluated every epoch",
          variants=_rules(0.9, 0.7, "cosine")[:4], curves=True),
    Table("eman_byol", "003 Tables 1 / 8 (BYOL): teacher BN batch / eman / copy / own, TMA teacher",
          "EMAN (teacher BN statistics by EMA) >= batch statistics; copy/own between (003 Tables 1, 8)",
          "byol_digits", [*SSL_FASHION, "teacher.preserve_prob=0"], [0, 1, 2], SSL_BUDGET,
          grid=["teacher.norm=batch,eman,copy,own"]),
    Table("eman_byol_long", "003 Tables 1 / 8 (BYOL) at 10x the steps: teacher BN batch / eman / copy / own",
          "as eman_byol", "byol_digits", [*SSL_LONG, "teacher.preserve_prob=0"], [0, 1, 2], SSL_LONG_BUDGET,
          grid=["teacher.norm=batch,eman,copy,own"]),
    Table("t6_fixmatch", "000 Table 6: FixMatch with 40 and 250 labels, TMA vs STS (vs TMA at STS's horizon)",
          "STS teacher beats the TMA teacher, most at 40 labels (000 Table 6)",
          "fixmatch_fashion", [], [0, 1, 2],
          "fixmatch_fashion recipe: 600 steps x (16 labeled + 112 unlabeled x 2 views)",
          variants=_rules(0.99, 0.5, "constant")[2:], grid=["data.labels_per_class=4,25"],
          seed_keys=["seed", "data.split_seed"], metrics=SEMI_METRICS),
    Table("eman_fixmatch", "003 Tables 1 / 8 (FixMatch, pseudo-labels from the teacher): BN modes",
          "FixMatch-EMAN: teacher BN by EMA >= batch statistics (003 Table 8)",
          "fixmatch_fashion", ["fixmatch.pseudo_labels_from=teacher"], [0],
          "fixmatch_fashion recipe (40 labels): 600 steps x (16 + 112 x 2) images",
          grid=["teacher.norm=batch,eman,copy,own"], seed_keys=["seed", "data.split_seed"], metrics=SEMI_METRICS),
    Table("t004_semi", "004 Tables 1-2: supervised / Pi-model / Temporal Ensembling / Mean Teacher, 100 and "
          "1000 labels",
          "MT > TE > Pi > supervised, the gap largest with fewest labels (004 Tables 1-2)",
          "mean_teacher_fashion", [], [0, 1, 2],
          "the *_fashion recipes: 1000 steps x (32 labeled + 128 unlabeled) images",
          variants=[["supervised", "recipe=supervised_fashion"], ["Pi", "recipe=pi_model_fashion"],
                    ["TE", "recipe=temporal_ensembling_fashion"], ["MT", "recipe=mean_teacher_fashion"]],
          grid=["data.labels_per_class=10,100"], seed_keys=["seed", "data.split_seed"], metrics=SEMI_METRICS),
    Table("t004_semi_long", "004 Tables 1-2 at 4x the steps (the test t004_semi's reading asks for): supervised / "
          "Pi-model / Temporal Ensembling / Mean Teacher, 100 and 1000 labels",
          "as t004_semi", "mean_teacher_fashion", ["optim.epochs=40"], [0],
          "the *_fashion recipes at 4x the steps: 4000 steps x (32 labeled + 128 unlabeled) images, the 400-step "
          "consistency ramp-up unchanged; label split 0",
          variants=[["supervised", "recipe=supervised_fashion"], ["Pi", "recipe=pi_model_fashion"],
                    ["TE", "recipe=temporal_ensembling_fashion"], ["MT", "recipe=mean_teacher_fashion"]],
          grid=["data.labels_per_class=10,100"], seed_keys=["seed", "data.split_seed"], metrics=SEMI_METRICS),
]
BY_ID = {t.id: t for t in TABLES}

# Plain readings of what was measured, written by hand after looking at the numbers (never generated).
READINGS: dict[str, str] = {
    "eman_byol_long": (
        "(2026-11-27, 3 seeds, 1500 steps, ~72 s per run on one core.) The order of eman_byol holds at 10x the "
        "steps, and every mode now learns: batch statistics 74.5 +- 0.7 (+5.7 to +10.9 over each seed's random "
        "network), copy 72.1 +- 1.9, own 71.9 +- 1.0, EMAN 67.7 +- 5.2 (the same runs as t1_byol_long's TMA row, "
        "bit for bit: EMAN is the recipe's default), the only mode below its random network on a seed (seed 2, "
        "-7.4). 003's claim (EMAN >= batch statistics) does not reproduce at this budget; the lag explanation "
        "given for eman_byol is weaker here (1500 steps), and a longer run was not made."),
    "fig4_heatmap_long": (
        "(2026-11-27, seed 0, constant m, 1500 steps, ~73 s per run on one core.) Not 000 Fig. 4's picture. At "
        "m = 0 (SE) runs either collapse or learn with no order in p: p = 0 and 0.3 collapse to chance (10 %), "
        "p = 0.1 and 0.7 half-collapse (49.0, 42.3), p = 0.9 ends at 60.3 and p = 0.5 at 70.8, the best cell of "
        "the grid; one seed cannot tell a trend from luck here. At m = 0.9 every p learns (65.4-70.6; TMA 68.0, "
        "STS at p = 0.1-0.3 70.2-70.6, inside TMA's 5-point seed spread in t1_byol_long). At m = 0.99 accuracy "
        "falls as p rises (66.6 at p = 0 to 61.9-63.5 at p = 0.7-0.9): the slower the expected horizon, the less "
        "the teacher has moved in 1500 steps; the paper's best region (p = 0.7, m = 0.99) is among the worst here."),
    "eman_fixmatch": (
        "(2026-11-27, seed 0, 40 labels, pseudo-labels from the teacher as in FixMatch-EMAN, 600 steps.) Not "
        "reproduced, and one seed could not show it: teacher top-1 own 61.9, batch 61.5, copy 59.4, EMAN 59.3 "
        "(003 Table 8: EMAN >= batch statistics), a 2.6-point range against the 3-4 point spread of label splits "
        "at 40 labels in t6_fixmatch."),
    "t6_fixmatch": (
        "(2026-11-27, 3 seeds = label splits, 600 steps, ~45 s per run on one core.) Does not reproduce: the TMA "
        "teacher (m = 0.99) beats the STS teacher (p = 0.5) at both label counts, 61.0 +- 2.9 vs 57.5 +- 4.4 % "
        "with 40 labels and 74.0 +- 0.8 vs 71.4 +- 0.7 % with 250, on every seed (000 Table 6: STS ahead, most "
        "with 40 labels). The student is the same in all three rows (classic FixMatch pseudo-labels from the "
        "student; the teacher only evaluates, as in the FixMatch release), 62.7 and 73.7 %, so this compares "
        "averages of one trajectory: after 600 steps the slower average lags the student more. STS scores what "
        "TMA at its expected horizon (m' = 0.995) scores, 57.3 and 71.3 %, within 0.2 points on average."),
    "corruption_byol": (
        "(2026-11-27, the STS and TMA teachers of t1_byol_long, 70-75 s per seed on one core.) 000 Fig. 5's claim "
        "does not reproduce: over the 75 cells the STS teacher scores 0.9 +- 7.1 points *below* the TMA teacher "
        "(paper: 1.5 above), and the sign follows the seed: STS is worse at seeds 0 and 1 (-3.4 and -6.5; better "
        "on 11 and 5 of the 75 cells) and better at seed 2 (+7.0; 68 of 75 cells), the seed whose TMA run ended "
        "below its random network. Robustness here tracks clean accuracy (clean STS - TMA: -4.1, -4.3, +1.5). "
        "How much each teacher loses from clean to corrupted is close: 20.0 points for STS and 21.4 for TMA on "
        "average (per seed 19.7 vs 20.5, 21.5 vs 19.4, 18.7 vs 24.2), so no robustness beyond accuracy can be "
        "claimed from three seeds of a 1500-step BYOL on 28-px images."),
    "t1_byol_long": (
        "(2026-11-27, 3 seeds, 72 s per run on one core, a second study driver on the other.) At 10x the steps "
        "000 Table 1's first claim reproduces: without smoothing BYOL collapses (kNN 32.1 +- 19.3, seed 0 to "
        "chance, 10 %; linear 28.9), while TMA learns (67.7 +- 5.2 kNN, 71.8 linear; above its random network "
        "on 2 of 3 seeds). SE alone (p = 0.7, m = 0) only partly avoids the collapse (43.0 kNN, 39.8 linear): "
        "better than none on 2 of 3 seeds and on average, but 25 points under TMA, where 000 Table 1 has SE on a par with TMA. "
        "STS does not beat TMA (65.9 +- 0.9 kNN, 69.5 +- 0.6 linear against 67.7 / 71.8): the paper's +0.4 to "
        "+1.0 (000 Table 2) does not reproduce; STS's lower spread over seeds is its one visible gain. TMA at "
        "STS's expected horizon (m' = 0.97) scores 68.0 +- 2.0 / 71.7 +- 1.3, at or above STS on every seed, with "
        "the same smoothness (output change 0.014 vs 0.021; TMA at m = 0.9: 0.051; none: 5.4): here the spatial "
        "draw adds nothing beyond a slower horizon."),
    "fig4_se": (
        "(2026-11-27, 3 seeds, m = 0, layer-wise, 150 steps.) Does not reproduce at this budget: SE's kNN does not "
        "rise with p. Every p ends within 1.5 points of the random network on average (63.7-66.5 against init "
        "66.3 +- 2.9), p = 0.3 highest (66.5) and p = 0.7-0.9 lowest (64.0, 63.7), all inside a 2-4.5 point seed "
        "spread; p = 0.99 (64.3) does not fail either, since in 150 steps nothing has had time to go wrong or right. "
        "What p = 0.99 does show is the jumpiness 000 discusses: its teacher's output changes most between "
        "evaluations (3.5, against 0.9-1.5 for p <= 0.9), because a layer that waited ~100 steps is replaced by "
        "the current student's in one step, next to layers of other ages. t1_byol_long shows SE at 1500 steps."),
    "eman_byol": (
        "(2026-11-27, 3 seeds, TMA teacher m = 0.9 -> 1, 12 s per run on one core.) The opposite of 003's claim: "
        "the teacher with batch statistics is the only one that beats the random network on every seed (69.5 +- "
        "1.6 against init 66.3 +- 2.9; +1.3 to +6.3 per seed), while EMAN is the worst and below init on every "
        "seed (63.6 +- 2.2; -0.8 to -4.5); copy (66.0 +- 4.2) and own (66.0 +- 3.2) sit at init. Why, we think: "
        "at 150 steps the EMAN teacher normalises with an average of the student's running statistics, which "
        "start from the random network's (BN momentum 0.1) and trail it further through the teacher's EMA, while "
        "batch statistics normalise each target batch exactly, as BYOL's own target network does; 003's gain "
        "is reported after 200-800 epochs, where that lag is negligible. eman_byol_long tests it at 10x the steps."),
    "fig4_heatmap": (
        "(2026-11-27, seed 0, constant m, 11 s per run on one core.) Does not reproduce, and one seed could not "
        "show it: the cells span 59.1-66.0 % kNN around the random network's 63.7, against a 3-point seed spread "
        "(t1_byol). At m = 0 accuracy does not rise with p as in 000 Fig. 4: p = 0.3 and 0.5 are best (65.9, "
        "65.6), p = 0.7 and 0.9 worst (59.8, 59.1). At m = 0.99 it does rise with p (59.7 at p = 0 to 66.0 at "
        "p = 0.9, the best cell), but that cell is also the slowest teacher (expected horizon m' = 0.999, "
        "which in 150 steps moves 14 % of the way from its random start), so it says more about horizon "
        "than about the spatial draw."),
    "t4_granularity": (
        "(2026-11-27, seed 0.) Accuracy: every granularity ends below the random network (63.7 %) at this "
        "budget; SE spans 59.8-62.4 % and STS 59.7-60.0 % across tensor / layer / channel / neuron, so "
        "'granularity matters little' holds for STS and cannot be told from seed noise for SE. Time per update "
        "(ResNet-50, the update timing printed below, 1 thread, process clock, the study's other driver on the "
        "second core): tensor and layer 0.53x our TMA, channel 1.08x, neuron 2.94x; with the non-finite check "
        "off 0.15 / 0.15 / 0.71 / 2.57x. Finer units cost more, as in 000 Table 4; the 2-thread figures on an "
        "idle machine are in the README (neuron 3.0-3.2x)."),
    "fig3_smoothness": (
        "(2026-11-27, seed 0, evaluated every 30 steps.) 000 Fig. 3's claim holds for STS and TMA: the teacher's "
        "output change on a fixed batch between evaluations stays at 0.46-3.4 for no smoothing, falls from 0.33 "
        "to 0.0006 for TMA (its cosine m reaches 1 at the end), and is smallest throughout for STS (0.0087 to "
        "5e-5). SE (p = 0.7, m = 0) changes more than no smoothing in the first two intervals (2.39 vs 1.57, "
        "0.63 vs 0.46) and 5-18x less in the last three. Parameter changes order the same way. As t1_byol shows, a TMA teacher "
        "with STS's expected horizon is as smooth as STS."),
    "t004_semi_long": (
        "(2026-11-27/28, label split 0 only, 4000 steps, 43-306 s per run at 2 threads, the machine otherwise "
        "lightly used.) Partly supports t004_semi's explanation, and 004's claim still does not reproduce. "
        "From 1000 to 4000 steps (split 0 of t004_semi against this table) the three consistency methods gain "
        "2-3x what supervised-only gains: at 100 labels supervised +1.5 (67.7 -> 69.2), Pi +4.9 (64.2 -> 69.1), "
        "TE +3.0 (64.2 -> 67.1), MT +5.1 (63.2 -> 68.3); at 1000 labels supervised +4.6 (78.4 -> 83.0), Pi "
        "+9.2, TE +8.1, MT +9.9 (to 78.1, 77.7, 77.6). So the gaps to supervised-only halve (100 labels: Pi "
        "-0.1, MT -0.9, TE -2.1; 1000 labels: about -5), as under-training by the diluted labelled loss and the "
        "short run after the ramp-up would predict, but none of them overtakes supervised-only, and their order "
        "is not 004's (Pi >= MT > TE at 100 labels; one split, and the three were within about a point of one "
        "another across splits at 1000 steps). Whether they overtake it at 004's budget (150,000 steps) is "
        "beyond 2 CPU cores; this table is the longest we ran."),
    "t004_semi": (
        "does not reproduce (2026-11-27; seeds 0-2 = label splits 0-2). First run under a load average of 2-8 "
        "(2943 s); re-run on the quiet machine at 2 threads to time it: 15 min, every result the same bit for bit. "
        "004's order MT > TE > Pi > "
        "supervised-only is reversed: supervised-only is best at both label counts (68.8 % at 100 labels, 78.1 % "
        "at 1000), and Pi-model, Temporal Ensembling and Mean Teacher end 3.8-5.1 points (100 labels) and 8-10 "
        "points (1000 labels) below it, within about 1 point of one another. Why, we think: the three share two "
        "things supervised-only lacks at this budget. Their class loss is averaged over the whole minibatch (32 "
        "labelled of 160 images, as 004's release does), so at the same learning rate the labelled images pull "
        "5x less per step than in supervised-only; and 1000 steps (004: 150,000) end soon after the 400-step "
        "consistency ramp-up, so the consistency target has little time to pay back. t004_semi_long runs that "
        "test at 4x the steps (label split 0): the gaps halve, none closes. Mean Teacher's teacher is the smoothest (output change 0.07 against 0.78 "
        "for supervised-only and 0.15-0.33 for TE and Pi)."),
    "t1_byol": (
        "(2026-11-27, 3 seeds, 6 s per run with the machine otherwise nearly idle.) Nothing of 000 Tables 1-2 "
        "reproduces at this budget, because BYOL learns nothing the kNN probe sees in 150 steps: every rule ends "
        "1.9-3.0 points below its own random network (init 66.3 +- 2.9), and the rules differ by at most 1.2 "
        "points, a third of the seed spread. The linear probe separates two groups instead: the fast teachers "
        "(none 69.2, SE 68.6, TMA 68.6) above the slow ones (STS 65.0, TMA at STS's horizon 65.1): in 150 steps "
        "a slow teacher is still close to its random start. STS and TMA with the same expected horizon (m' = "
        "0.97) agree on every measure, kNN (63.6 vs 64.2), linear (65.0 vs 65.1) and output smoothness (0.05 vs "
        "0.05, against 1.53 for no smoothing and 0.87 for TMA at m = 0.9): at this budget what STS adds over TMA "
        "is its slower horizon, not the spatial draw. t1_byol_long repeats the table at 10x the steps."),
    "t1_moco": (
        "(2026-11-27, 3 seeds, 8 s per run, one core per run.) Does not reproduce at this budget. MoCo v2 moves off "
        "the random network at seed 0 only (+2.3 to +5.2 points kNN across the rules) and ends 1.2-2.8 points below "
        "it at seeds 1 and 2, so over three seeds every rule is within 0.8 points of init (66.3 +- 2.9). The "
        "ordering the paper reports shows only as a hint: TMA at STS's horizon 67.0 >= TMA 66.8 >= STS 66.4 >= "
        "none 66.1 >= SE 65.9 (kNN), and 69.7 / 69.5 / 69.4 / 69.2 / 69.1 by linear probe, differences of at most "
        "1.2 points against a 1.3-2.9 point seed spread; 'MoCo without a momentum encoder degrades' (000 Table 1) "
        "is a 0.7-point gap here. The smoothness ordering is clear at every seed: output change none 30.8 > SE 20.8 "
        "> TMA 14.8 > STS 8.2 = TMA at STS's horizon 8.2; as for BYOL, STS matches the TMA of the same expected "
        "horizon on every measure."),
}


# Issue 11: paper 000 Fig. 5 on Fashion-MNIST: the STS teacher of t1_byol against the TMA teacher of the same
# seed, each scored by a linear probe on clean features, over the 15 corruptions x 5 severities.
CORRUPTION_ID = "corruption_byol"
CORRUPTION_OF = ("t1_byol_long", "STS", "TMA", [0, 1, 2])


def _checkpoint(table: str, variant: str, seed: int) -> Path:
    return STUDY / table / "runs" / f"variant={variant},seed={seed}" / "checkpoints" / "last.pt"


def corruption_argv(seed: int) -> list[str]:
    table, variant, baseline, _ = CORRUPTION_OF
    return ["stsmooth", "eval", "corruption", str(_checkpoint(table, variant, seed)), "which=teacher",
            f"baseline={_checkpoint(table, baseline, seed)}", "--out", str(STUDY / CORRUPTION_ID / f"seed{seed}")]


def run_corruption() -> int:
    """The corruption evaluation of each seed whose two checkpoints exist and whose result does not."""
    table, variant, baseline, seeds = CORRUPTION_OF
    status = 0
    for seed in seeds:
        done = STUDY / CORRUPTION_ID / f"seed{seed}" / "corruption.json"
        if done.is_file() or not all(_checkpoint(table, v, seed).is_file() for v in (variant, baseline)):
            continue
        argv = corruption_argv(seed)
        print(f"study: {CORRUPTION_ID}: {shlex.join(argv)}", flush=True)
        start, load0 = time.time(), os.getloadavg()[0]
        code = subprocess.call(argv, cwd=ROOT)
        (STUDY / CORRUPTION_ID).mkdir(parents=True, exist_ok=True)
        with open(STUDY / CORRUPTION_ID / "study_log.jsonl", "a") as f:
            f.write(json.dumps({"command": shlex.join(argv), "seed": seed, "seconds": round(time.time() - start, 1),
                                "load_start": load0, "load_end": os.getloadavg()[0], "exit": code}) + "\n")
        status |= code != 0
    return status


#: What the tables say together, written by hand after reading them (never generated).
SUMMARY = [
    ("**Reproduces at this scale.** BYOL collapses without smoothing and learns with TMA (t1_byol_long: 32 % "
    "against 68 % kNN at 1500 steps; 000 Table 1). Averaged teachers (TMA, STS) change far less between "
    "evaluations than the student itself (fig3_smoothness and every table's smoothness; 000 Fig. 3). Finer "
    "units cost more time per update (t4_granularity; 000 Table 4)."),
    ("**Does not reproduce at this scale.** STS over TMA (t1_byol_long -1.8 points, t1_moco within noise, "
    "t6_fixmatch -2.6 to -3.5, corruption_byol -0.9 +- 7.1; 000 Tables 2, 6, Fig. 5); SE on a par with TMA (SE "
    "only partly avoids BYOL's collapse); EMAN >= batch statistics (eman_byol, eman_byol_long: the opposite at 150 and 1500 steps); 004's "
    "MT > TE > Pi > supervised (t004_semi: reversed at 1000 steps; t004_semi_long: the gaps halve at 4000, none closes). Each table's reading says why we think so."),
    ("**Matched horizon.** In every table STS scores and smooths like the TMA teacher with the same expected "
    "horizon m' = 1 - (1 - p)(1 - m): at this scale what STS adds over TMA is its slower horizon, not the "
    "spatial draw."),
    ("Budgets are CPU-sized (150 or 1500 BYOL/MoCo steps of 128 images, 600-1000 semi-supervised steps on a "
    "width-8 or width-16 CNN): the papers train for 200-800 epochs of ImageNet or CIFAR, so none of this "
    "refutes them; it shows what holds, and what does not, where a CPU user can check."),
]


# ---------------------------------------------------------------- running


def _log(table: Table, record: dict) -> None:
    table.out.mkdir(parents=True, exist_ok=True)
    with open(table.out / "study_log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def run(ids: list[str]) -> int:
    """Runs the tables' sweeps one after another; a failed table does not stop the others."""
    status = 0
    for table in [BY_ID[i] for i in ids]:
        argv = table.argv()
        print(f"study: {table.id}: {shlex.join(argv)}", flush=True)
        start, load0 = time.time(), os.getloadavg()[0]
        code = subprocess.call(argv, cwd=ROOT)
        _log(table, {"command": shlex.join(argv), "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                     "seconds": round(time.time() - start, 1), "load_start": load0, "load_end": os.getloadavg()[0],
                     "exit": code})
        status |= code != 0
        if table.probe:
            status |= run_probes(table)
        extra = table.out / "update_time.txt"
        if table.extra and code == 0 and not extra.is_file():
            done = subprocess.run(table.extra, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode == 0:
                extra.write_text(f"$ {shlex.join(table.extra)}\n(load average {os.getloadavg()[0]:.1f})\n"
                                 + done.stdout)
            status |= done.returncode != 0
    return status


def run_probes(table: Table) -> int:
    """A linear probe of the teacher of each finished run of ``table`` that has none yet (RUN/linear.json)."""
    from stsmooth.training import sweep

    spec = sweep.load_spec(table.out)
    status = 0
    for r in sweep.plan(spec, table.out, table.seeds) if spec else []:
        out = r.folder / "linear.json"
        if r.status() == "done" and not out.is_file():
            argv = ["stsmooth", "eval", "linear", str(r.folder / "checkpoints" / "last.pt"), "--out", str(out)]
            status |= subprocess.call(argv, cwd=ROOT, stdout=subprocess.DEVNULL) != 0
    return status


# ---------------------------------------------------------------- report


def _fmt(values: list[float]) -> str:
    if not values:
        return "—"
    mean = statistics.fmean(values)
    text = f"{mean:.3g}" if 0 < abs(mean) < 0.01 else f"{mean:.2f}"
    if len(values) > 1:
        std = statistics.stdev(values)
        text += f" ± {std:.2g}" if 0 < abs(mean) < 0.01 else f" ± {std:.2f}"
    return text


def _curves(folder: Path) -> list[tuple[str, str, str]]:
    if not (folder / "metrics.csv").is_file():
        return []
    with open(folder / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [(r["epoch"], r["param_msd"], r["output_msd"]) for r in rows if r.get("param_msd")]


def section(table: Table) -> str:
    from stsmooth.training import sweep

    lines = [f"## {table.id}: {table.title}", "", f"Paper's claim: {table.claim}.", "",
             f"Budget: {table.budget}; seeds {', '.join(map(str, table.seeds))}.", "", "```",
             shlex.join(table.argv()), "```", ""]
    spec = sweep.load_spec(table.out)
    rows = sweep.collect(spec, table.out) if spec else []
    if table.probe and rows:  # the teacher's linear probe, from each run folder's linear.json
        folders = {(tuple(r.point.items()), r.seed): r.folder for r in sweep.plan(spec, table.out)}
        for row in rows:
            folder = folders.get((tuple((k, row[k]) for k, _ in spec.axes()), row["seed"]))
            probe = folder / "linear.json" if folder else None
            if probe and probe.is_file():
                row["teacher.linear_top1"] = json.loads(probe.read_text())["top1"]
    if not rows:
        return "\n".join(lines + [f"*{NOT_RUN}.*", ""])
    runs = sweep.plan(spec, table.out, table.seeds)
    done = [r for r in runs if r.status() == "done"]
    seconds = [float(r["seconds"]) for r in rows if r.get("seconds") is not None]
    lines.append(f"Finished {len(done)} of {len(runs)} runs; wall time {sum(seconds):.0f} s in all "
                 f"({statistics.fmean(seconds):.0f} s per run).")
    log = table.out / "study_log.jsonl"
    loads = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    if loads:
        lines.append("Load average (1 min) during the driver's sweeps: "
                     + ", ".join(f"{x['start']} {x['load_start']:.1f} -> {x['load_end']:.1f}" for x in loads)
                     + " (2 cores: above 2 means the run shared them).")
    else:
        lines.append("Load not recorded (sweep started outside the driver); see the reading.")
    axes = [a for a, _ in spec.axes()]
    metrics = [m for m in table.metrics if any(m in r for r in rows)]
    lines += ["", "| " + " | ".join([*axes, "n", *metrics]) + " |", "|" + "---|" * (len(axes) + 1 + len(metrics))]
    by_point = sweep.groups(rows, axes)
    for point in spec.points():
        key = tuple(point[a] for a in axes)
        members = by_point.get(key, [])
        cells = [_fmt([float(r[m]) for r in members if r.get(m) is not None]) for m in metrics]
        lines.append("| " + " | ".join([*key, str(len(members)), *cells]) + " |")
    if table.curves:
        lines += ["", "Teacher change between evaluations (param MSD / output MSD on a fixed probe batch), seed 0:",
                  "", "| run | epoch: param MSD / output MSD |", "|---|---|"]
        for r in done:
            curve = _curves(r.folder)
            lines.append(f"| {r.name} | " + "; ".join(f"{e}: {float(p):.3g} / {float(o):.3g}" for e, p, o in curve)
                         + " |")
    extra = table.out / "update_time.txt"
    if table.extra:
        lines += ["", "Time per teacher update:", "", "```", extra.read_text().strip(), "```"] if extra.is_file() \
            else ["", f"Time per teacher update (`{shlex.join(table.extra[1:])}`): *{NOT_RUN}.*"]
    lines += ["", f"Reading: {READINGS.get(table.id, 'not written yet.')}", ""]
    return "\n".join(lines)


def corruption_section() -> str:
    """Issue 11's row: STS vs TMA teachers of t1_byol under the 75 corruptions, per seed and mean ± std."""
    table, variant, baseline, seeds = CORRUPTION_OF
    lines = [f"## {CORRUPTION_ID}: 000 Fig. 5 on Fashion-MNIST: {variant} vs {baseline} teachers under corruption", "",
             ("Paper's claim: the STS teacher is more robust than the TMA teacher: +1.5 points mean top-1 over the "
             "75 ImageNet-C cells, +0.5 to +5.6 on single cells (000 §4.4, Fig. 5)."), "",
             (f"The {variant} and {baseline} teachers of `{table}` (same seed), each scored by a linear probe fitted on "
             "clean training features; the 15 corruptions at severities 1-5 generated from the 10,000 test images "
             "(CIFAR-10-C parameters at 28 px), seed 0. Per seed:"), "", "```",
             shlex.join(corruption_argv(seeds[0])).replace("seed=0", "seed=S").replace("seed0", "seedS"), "```", ""]
    found = {}
    for seed in seeds:
        path = STUDY / CORRUPTION_ID / f"seed{seed}" / "corruption.json"
        if path.is_file():
            found[seed] = json.loads(path.read_text())
    if not found:
        return "\n".join(lines + [f"*{NOT_RUN}.*", ""])
    log = STUDY / CORRUPTION_ID / "study_log.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    if entries:
        lines.append("Wall time per seed: " + ", ".join(f"seed {e['seed']} {e['seconds']:.0f} s (load "
                                                        f"{e['load_start']:.1f} -> {e['load_end']:.1f})" for e in entries)
                     + ".")
    cols = [f"clean {variant}", f"clean {baseline}", f"mean corrupted {variant}", f"mean corrupted {baseline}",
            f"{variant} - {baseline}", *[f"severity {k} diff" for k in ("1", "2", "3", "4", "5")], "mCE (%)",
            "relative mCE (%)"]
    lines += ["", "| seed | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    per_seed = []
    for seed, d in found.items():
        r, b, c = d["results"], d["baseline"], d["comparison"]["teacher"]
        row = [r["clean"]["teacher"], b["clean"]["teacher"], r["mean"]["teacher"], b["mean"]["teacher"],
               c["mean_difference"], *[c["per_severity_difference"].get(k, float("nan")) for k in "12345"],
               c["mCE"], c["relative_mCE"]]
        per_seed.append(row)
        lines.append(f"| {seed} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    if len(per_seed) > 1:
        lines.append("| mean ± std | " + " | ".join(_fmt([row[i] for row in per_seed if row[i] == row[i]])  # NaN: not evaluated
                                                    for i in range(len(cols)))
                     + " |")
    lines += ["", f"Reading: {READINGS.get(CORRUPTION_ID, 'not written yet.')}", ""]
    return "\n".join(lines)


def report(path: Path = RESULTS) -> None:
    head = ["# Results: the papers' tables at small scale on Fashion-MNIST", "",
            ("Generated by `python benchmarks/study.py report` from the run folders under `runs/study/` "
            "(made by `python benchmarks/study.py run`, which continues an unfinished study). Numbers are kNN "
            "(k=20) top-1 % on the 10,000 Fashion-MNIST test images (self-supervised tables) or test top-1 % "
            "(semi-supervised), mean ± sample std over the seeds that finished (n). `init` is the randomly "
            "initialised network. Wall times are on the 2-core CPU machine: each table's load line says how busy it was; "
            "from 2026-11-27 21:07 UTC two study drivers ran side by side with one torch thread each "
            "(OMP_NUM_THREADS=1), so a run's seconds are those of one core. A table with no finished run says so; "
            "nothing here is estimated."), "", *("- " + item for item in SUMMARY), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(head + [section(t) for t in TABLES] + [corruption_section()]))
    print(f"study: wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "report", "list"))
    parser.add_argument("tables", nargs="*", help=f"table ids (default: all, in this order): {', '.join(BY_ID)}")
    args = parser.parse_args(argv)
    unknown = [t for t in args.tables if t not in BY_ID]
    if unknown:
        parser.error(f"unknown table {unknown[0]!r}; have: {', '.join(BY_ID)}")
    ids = args.tables or list(BY_ID)
    os.chdir(ROOT)
    if args.action == "list":
        for i in ids:
            print(f"{i}: {shlex.join(BY_ID[i].argv())}")
        return 0
    if args.action == "run":
        status = run(ids)
        if not args.tables or CORRUPTION_OF[0] in ids:
            status |= run_corruption()
        report()
        return status
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
