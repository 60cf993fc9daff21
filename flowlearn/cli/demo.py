"""``flowlearn demo``: the whole story on the embedded engine, in under a minute.

1. Batch-train a pipeline (numeric scaling + feature hashing of categorical fields + logistic
   regression) on historical click events whose generating model is known.
2. Evaluate it, save it, reload it, and serve single rows through a ``LocalPredictor``.
3. Publish it as version 1 of a model store; a ``LocalPredictor`` follows the store.
4. Keep training the model online with FTRL on a stream of newer events (the world drifts
   part-way through), starting from the batch weights; every ``emit_every`` rows a new
   whole-pipeline version is published and the predictor hot-swaps to it.
5. The predictor scores a second stream of live traffic; windowed AUC and log loss are
   printed per window and model version, next to the frozen batch model and the best
   achievable log loss (the generating model's own).
6. A PNG plot of the metrics over windows and versions, and a summary table.

Progress bars (``tqdm``, from the ``demo`` extra) go to stderr: the L-BFGS iterations of the batch
fit and the live rows scored during the online phase; ``progress=False`` (``--no-progress``) or a
missing tqdm leaves them out.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time

import numpy as np
import pyarrow as pa

import flowlearn as fl
from flowlearn.classification.ftrl import OnlineLogisticRegression
from flowlearn.dashboard.metrics import EvalLog, JobMetricsWriter
from flowlearn.datasets import ClickStream
from flowlearn.evaluation import StreamingEvaluator
from flowlearn.modelstream import ModelStore
from flowlearn.serving.follow import StoreFollower

HASH_DIMS = 1 << 18


def _feature_stages() -> list:
    f = fl.feature
    return [
        f.VectorAssembler(input_cols=ClickStream.numeric, output_col="numeric", input_sizes=[1] * 3),
        f.StandardScaler(input_col="numeric", output_col="numeric_scaled", with_mean=True),
        f.FeatureHasher(input_cols=ClickStream.categorical, categorical_cols=ClickStream.categorical,
                        output_col="hashed", num_features=HASH_DIMS),
        f.VectorAssembler(input_cols=["numeric_scaled", "hashed"], output_col="features",
                          input_sizes=[3, HASH_DIMS]),
    ]


class _NoBar:
    n = 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def close(self) -> None:
        pass


def _bar(progress: bool, **kw):
    """A tqdm progress bar on stderr, or a stand-in that shows nothing (no tqdm, or progress off)."""
    if progress:
        try:
            from tqdm import tqdm
        except ImportError:
            return _NoBar()
        return tqdm(file=sys.stderr, leave=False, dynamic_ncols=True, **kw)
    return _NoBar()


def _say(bar, text: str) -> None:
    """Print a line to stdout without tearing the progress bar."""
    if hasattr(bar, "clear"):
        bar.clear()
        print(text, flush=True)
        bar.refresh()
    else:
        print(text)


def _row_str(cols: list[tuple[str, int]], values: list) -> str:
    return "  ".join(f"{v:>{w}}" if not isinstance(v, float) else f"{v:>{w}.4f}" for (_, w), v in zip(cols, values))


def run_demo(out_dir: str = "demo-output", quick: bool = False, progress: bool = True) -> int:
    t_start = time.perf_counter()
    n_hist, n_online, n_live = (20_000, 60_000, 30_000) if quick else (200_000, 600_000, 300_000)
    emit_every = n_online // 12
    window = n_live // 12
    os.makedirs(out_dir, exist_ok=True)

    print("flowlearn demo: batch training, online FTRL, model versions hot-swapped into a predictor\n")
    # Training events and live traffic come from the same world: same generating model, and
    # the drift hits both a third of the way into the online phase.
    train_events = ClickStream(seed=7, drift_at=n_hist + n_online // 3, drift=0.6)
    history = train_events.table(n_hist)
    newer = train_events.table(n_online)
    live = ClickStream(seed=7, drift_at=n_live // 3, drift=0.6, event_seed=99).table(n_live)

    # ---- 1. batch training -------------------------------------------------------------
    t0 = time.perf_counter()
    train, held_out = history.slice(0, int(n_hist * 0.8)), history.slice(int(n_hist * 0.8))
    lr = fl.classification.LogisticRegression(reg=1e-4, tol=1e-4)
    pipeline = fl.Pipeline(_feature_stages() + [lr])
    bar = _bar(progress, total=lr.max_iter, desc="[batch]   L-BFGS", unit="it")
    with bar_updates(bar):
        batch_model = pipeline.fit(train)
    bar.close()
    scored = batch_model.transform(held_out)
    metrics = fl.evaluation.BinaryClassificationEvaluator(metrics_names=["areaUnderROC", "areaUnderPR", "ks"]) \
        .transform(scored).to_pylist()[0]
    print(f"[batch]   trained on {train.num_rows:,} historical events with {HASH_DIMS:,} hashed dimensions "
          f"in {time.perf_counter() - t0:.1f}s")
    print(f"[batch]   held-out AUC {metrics['areaUnderROC']:.4f}  AUC-PR {metrics['areaUnderPR']:.4f}  "
          f"KS {metrics['ks']:.4f}  (best achievable log loss {ClickStream.best_log_loss(held_out):.4f})")

    path = os.path.join(out_dir, "batch-model")
    batch_model.save(path, overwrite=True)
    reloaded = fl.LocalPredictor(path)
    row = {k: v for k, v in held_out.slice(0, 1).to_pylist()[0].items() if k not in ("label", "true_probability")}
    p = reloaded.predict(row)["raw_prediction"][1]
    print(f"[batch]   saved to {path}, reloaded; LocalPredictor on one row: P(click) = {p:.4f} "
          f"(true probability {held_out.column('true_probability')[0].as_py():.4f})")

    # ---- 2. model store + following predictor --------------------------------------------
    store_dir = os.path.join(out_dir, "model-store")
    shutil.rmtree(store_dir, ignore_errors=True)  # a fresh story each run
    store = ModelStore(store_dir, keep_last=20)
    first = store.publish(batch_model, metadata={"kind": "batch", "rows": train.num_rows})
    metrics_dir = os.path.join(out_dir, "metrics")     # what `flowlearn dashboard` shows
    shutil.rmtree(metrics_dir, ignore_errors=True)
    live_log, frozen_log = EvalLog(metrics_dir, "live-online"), EvalLog(metrics_dir, "live-frozen")
    predictor = fl.LocalPredictor(store.load(first).model)
    predictor.swap(predictor.model, version=first)
    follower = StoreFollower(store, predictor, poll_interval=0.2)
    frozen = fl.LocalPredictor(batch_model)
    print(f"[store]   published the batch pipeline as version {first} to {store.url}; "
          f"a LocalPredictor follows the store\n")

    # ---- 3. online training + live scoring, one job on the embedded engine ---------------
    features = fl.PipelineModel(batch_model.stages[:-1])
    ftrl = OnlineLogisticRegression(alpha=0.05, beta=1.0, reg=1e-4, elastic_net=0.5, global_batch_size=256,
                                    emit_every=emit_every)
    ftrl.set_initial_model_data(batch_model.stages[-1])
    ev_online = StreamingEvaluator("binary", window_rows=window)
    ev_frozen = StreamingEvaluator("binary", window_rows=window)
    cols = [("window", 6), ("version", 7), ("AUC", 7), ("log loss", 8), ("frozen AUC", 10), ("frozen LL", 9),
            ("best LL", 7)]
    print(_row_str(cols, [c for c, _ in cols]))
    live_bar = _bar(progress, total=n_live, desc="[online]  live rows scored", unit="row", unit_scale=True)
    history_rows: list = []
    published = [first]
    swap_latencies: list[float] = []

    def publish(version: pa.Table) -> None:
        """Each FTRL version becomes a whole pipeline version in the store (features + new weights)."""
        lr = fl.classification.LogisticRegressionModel().set_model_data(version)
        t_pub = time.perf_counter()
        v = store.publish(fl.PipelineModel(list(features.stages) + [lr]),
                          metadata={"kind": "online", "model_version": version.column("model_version")[0].as_py()})
        published.append(v)
        follower.wait_for(v, timeout=5)
        swap_latencies.append(time.perf_counter() - t_pub)

    def score(batch: pa.Table) -> None:
        """Live traffic: the following predictor scores it; the frozen batch model alongside."""
        live_bar.update(batch.num_rows)
        out = predictor.predict_batch(batch)
        base = frozen.predict_batch(batch)
        base = base.append_column("model_version", pa.array([first] * base.num_rows, pa.int64()))
        on_rows, fr_rows = ev_online.update(out), ev_frozen.update(base)
        live_log.append(on_rows)
        frozen_log.append(fr_rows)
        for r_on, r_fr in zip(on_rows, fr_rows):
            best = ClickStream.best_log_loss(live.slice(r_on["window"] * window, window))
            vers = r_on["model_versions"]
            history_rows.append((r_on, r_fr, best))
            _say(live_bar, _row_str(cols, [r_on["window"], f"{vers[0]}-{vers[-1]}" if len(vers) > 1 else str(vers[0]),
                                           r_on["window_auc"], r_on["window_log_loss"], r_fr["window_auc"],
                                           r_fr["window_log_loss"], best]))

    # The engine polls its two sources in turn, so training events and live traffic interleave.
    events = fl.stream.from_table(newer, batch_size=n_online // 60)
    online_model = ftrl.fit(features.transform(events))  # a model following its own versions
    job = fl.run(fl.stream.model_stream(online_model).foreach(publish),
                 fl.stream.from_table(live, batch_size=n_live // 60).foreach(score))
    with JobMetricsWriter(job, metrics_dir, name="demo"):
        job.wait()
    live_bar.close()
    follower.close()

    # ---- 4. plot + summary --------------------------------------------------------------
    png = os.path.join(out_dir, "metrics.png")
    _plot(history_rows, png, drift_window=(n_live // 3) // window)
    on_ll = np.mean([r[0]["window_log_loss"] for r in history_rows])
    fr_ll = np.mean([r[1]["window_log_loss"] for r in history_rows])
    best_ll = np.mean([r[2] for r in history_rows])
    lat = np.array(swap_latencies) * 1000
    print(f"\nsummary ({time.perf_counter() - t_start:.1f}s)")
    print(f"  model versions published      {len(published)} (1 batch + {len(published) - 1} online), "
          f"store keeps the last {store.keep_last}")
    print(f"  publish -> served latency     p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
    print(f"  live log loss, online FTRL    {on_ll:.4f}   (cumulative AUC {history_rows[-1][0]['cumulative_auc']:.4f})")
    print(f"  live log loss, frozen batch   {fr_ll:.4f}   (cumulative AUC {history_rows[-1][1]['cumulative_auc']:.4f})")
    print(f"  best achievable log loss      {best_ll:.4f}   (the generating model)")
    print(f"  plot                          {png}")
    print(f"  dashboard                     flowlearn dashboard {store_dir} --metrics-dir {metrics_dir}")
    return 0


@contextlib.contextmanager
def bar_updates(bar):
    """Move ``bar`` with the solver's iterations (``flowlearn.optim.report_progress``)."""
    from flowlearn.optim import report_progress

    def hook(iteration: int, most: int) -> None:
        bar.update(max(0, iteration - bar.n))

    with report_progress(hook):
        yield


def _plot(rows: list, path: str, drift_window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowlearn import plot

    fig = plot.metrics_over_windows({"online FTRL (hot-swapped versions)": [r[0] for r in rows],
                                     "frozen batch model": [r[1] for r in rows]},
                                    metrics=["log_loss", "auc"], mark=drift_window)
    fig.set_size_inches(9, 6)
    fig.axes[0].plot([r[0]["window"] for r in rows], [r[2] for r in rows], ":", color="k",
                     label="best achievable (generating model)")
    fig.axes[0].legend(fontsize=8)
    fig.axes[0].set_title("flowlearn demo: the world drifts at the grey line; the online model follows it")
    fig.axes[1].set_xlabel("window of live traffic")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
