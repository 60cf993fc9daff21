"""End-to-end: Debian's chromium, driven by Playwright, watches ``flowlearn dashboard`` while a real
flowlearn job trains FTRL on the breast-cancer data, gates each version on held-out AUC, publishes
the versions into a ModelStore and writes its evaluation and job metrics. The page must show a new
version appear and the AUC chart gain windows; a screenshot is kept as an artifact in
``test-artifacts/dashboard.png`` (or ``$FLOWLEARN_TEST_ARTIFACTS/dashboard.png``).

Needs the ``chromium`` Debian package (``/usr/bin/chromium``, or ``$FLOWLEARN_CHROMIUM``) and the
``playwright`` Python package (its own browser downloads are never used); skipped otherwise.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the dashboard needs starlette (the serve extra)")
pytest.importorskip("uvicorn", reason="the dashboard needs uvicorn (the serve extra)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs the playwright package")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

CHROMIUM = os.environ.get("FLOWLEARN_CHROMIUM", "/usr/bin/chromium")
if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"the browser test needs Debian's chromium at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)

import flowlearn as fl  # noqa: E402
import flowlearn.stream as fls  # noqa: E402
from flowlearn.classification.ftrl import OnlineLogisticRegression  # noqa: E402
from flowlearn.dashboard.app import serve_dashboard  # noqa: E402
from flowlearn.dashboard.metrics import EvalLog, JobMetricsWriter  # noqa: E402
from flowlearn.evaluation import StreamingEvaluator  # noqa: E402
from flowlearn.modelstream import ModelGate, ModelStore  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.environ.get("FLOWLEARN_TEST_ARTIFACTS", os.path.join(ROOT, "test-artifacts"))
TIMEOUT_MS = 60_000


def _cancer(rows: int, seed: int) -> fl.table:
    """``rows`` rows drawn (with replacement, in a seeded order) from sklearn's breast-cancer data."""
    x, y = sklearn_datasets.load_breast_cancer(return_X_y=True)
    idx = np.random.default_rng(seed).integers(0, len(y), rows)
    return fl.table({"raw": fl.linalg.from_numpy(x[idx]), "label": y[idx].astype(np.float64)})


def _slow(seconds: float):
    def throttle(t):
        time.sleep(seconds)
        return t
    return throttle


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def test_dashboard_shows_new_versions_and_metrics_while_a_job_runs(tmp_path, browser):
    store = ModelStore(str(tmp_path / "store"))
    metrics_dir = str(tmp_path / "metrics")
    os.makedirs(metrics_dir)

    # version 1: a batch pipeline (scaler + logistic regression) trained on the first rows
    history = _cancer(600, seed=1)
    batch = fl.Pipeline([fl.feature.StandardScaler(input_col="raw", output_col="features", with_mean=True),
                         fl.classification.LogisticRegression(reg=1e-3)]).fit(history)
    assert store.publish(batch, metadata={"kind": "batch", "rows": history.num_rows}) == 1
    features = fl.PipelineModel(batch.stages[:-1])

    server = serve_dashboard(store, metrics_dir=metrics_dir, port=0, refresh=0.25)
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    job = writer = None
    try:
        page.goto(server.url + "/")
        page.wait_for_selector('#latest-version[data-version="1"]', timeout=TIMEOUT_MS)
        page.wait_for_selector('#pipeline-graph g.node[data-stage="LogisticRegressionModel"]', timeout=TIMEOUT_MS)
        assert page.locator("#versions-table tbody tr").count() == 1

        # the job: FTRL from the batch weights on a throttled event stream, versions gated on
        # held-out AUC into the store; live requests scored by the newest version and evaluated
        events = fls.from_table(_cancer(3_000, seed=2), batch_size=60).map_batches(_slow(0.08), name="throttle")
        requests = fls.from_table(_cancer(3_000, seed=3), batch_size=60).map_batches(_slow(0.08), name="throttle2")
        ftrl = OnlineLogisticRegression(global_batch_size=20, emit_every=480, alpha=0.05, reg=1e-3)
        online = ftrl.set_initial_model_data(batch.stages[-1]).fit(features.transform(events))
        gate = ModelGate(metric="auc", min_value=0.9, held_out=features.transform(_cancer(400, seed=4)))
        scored = online.transform(features.transform(requests))
        evaluator = StreamingEvaluator("binary", window_rows=240, per_version=True)
        job = fl.run(gate.apply(fls.model_stream(online)).to_model_store(store, producer="ftrl"),
                     evaluator.evaluate(scored).foreach(EvalLog(metrics_dir, "live")),
                     checkpoint_dir=str(tmp_path / "chk"), checkpoint_interval=0.5)
        writer = JobMetricsWriter(job, metrics_dir, name="ftrl", interval=0.25, checkpoint_dir=str(tmp_path / "chk"),
                                  gates=[gate]).start()

        # a new version appears on the page, published by the job
        page.wait_for_function("Number(document.querySelector('#latest-version').dataset.version) >= 2",
                               timeout=TIMEOUT_MS)
        page.wait_for_selector('#versions-table tbody tr[data-version="2"] .kind-online', timeout=TIMEOUT_MS)
        # the job's gate passed candidate 1, which the store sink published as version 2
        page.wait_for_function("[...document.querySelectorAll('#gates-table tbody tr')].some(tr => "
                               "tr.children[1].textContent === '1' && tr.children[2].textContent === 'passed' && "
                               "tr.children[6].textContent === 'v2')", timeout=TIMEOUT_MS)
        # the AUC chart appears and then gains windows while the job runs
        auc = page.locator("#chart-live-auc")
        auc.wait_for(timeout=TIMEOUT_MS)
        page.wait_for_function("Number(document.querySelector('#chart-live-auc').dataset.points) >= 1",
                               timeout=TIMEOUT_MS)
        first = int(auc.get_attribute("data-points"))
        page.wait_for_function(f"Number(document.querySelector('#chart-live-auc').dataset.points) > {first}",
                               timeout=TIMEOUT_MS)
        assert job.running, "the chart must update while the job runs (make the job slower)"
        # the job's row and its throughput chart
        page.wait_for_selector('#jobs-table tr[data-job="ftrl"] .status-running', timeout=TIMEOUT_MS)
        page.wait_for_function("Number(document.querySelector('#throughput-chart').dataset.points) >= 2",
                               timeout=TIMEOUT_MS)
        # each chart draws a canvas: uPlot ran in the browser
        assert page.locator("#chart-live-auc canvas").count() == 1
        assert page.locator("#chart-live-log_loss canvas").count() == 1

        # a later version's pipeline on click: an online version is a bare LogisticRegressionModel
        page.locator('#versions-table tbody tr[data-version="2"]').click()
        page.wait_for_function("document.querySelector('#pipeline-version').textContent === 'v2'", timeout=TIMEOUT_MS)
        page.wait_for_function("document.querySelector('#pipeline-graph').dataset.nodes === '2'", timeout=TIMEOUT_MS)
        page.locator("#follow-latest").click()
        page.wait_for_function("document.querySelector('#pipeline-version').textContent !== 'v2' || "
                               "document.querySelector('#latest-version').dataset.version === '2'",
                               timeout=TIMEOUT_MS)

        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, "dashboard.png")
        page.screenshot(path=shot, full_page=True)
        assert os.path.getsize(shot) > 10_000

        job.wait(timeout=120)
        writer.close()
        page.wait_for_selector('#jobs-table tr[data-job="ftrl"] .status-finished', timeout=TIMEOUT_MS)
        # the page shows what the store holds
        shown = page.locator("#latest-version").get_attribute("data-version")
        assert int(shown) == store.latest_version()
        page.screenshot(path=os.path.join(ARTIFACTS, "dashboard-finished.png"), full_page=True)
    finally:
        if job is not None and job.running:
            job.stop()
        if writer is not None:
            writer.close()
        page.close()
        server.close()
