"""Apache Spark MLlib as a test oracle (``pyspark`` in ``local[1]`` on the machine's Java 17):
the session comes from the ``spark`` fixture of tests/conftest.py (one per test session)."""
from __future__ import annotations

import numpy as np


def spark_vectors(spark, x: np.ndarray, **columns):
    """A Spark DataFrame with the rows of ``x`` as dense vectors in column "features" (plus ``columns``)."""
    from pyspark.ml.linalg import Vectors

    names = list(columns)
    rows = [(Vectors.dense(r.tolist()), *[float(columns[c][i]) for c in names]) for i, r in enumerate(x)]
    return spark.createDataFrame(rows, ["features", *names])
