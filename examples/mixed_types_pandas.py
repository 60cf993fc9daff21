"""A pandas DataFrame of mixed types (numbers and a string category) -> logistic regression.

The category is indexed (StringIndexer) and one-hot encoded; ``handle_invalid="keep"`` gives a city
never seen in training its own (all-zero) slot. Probabilities come back as NumPy.

    python examples/mixed_types_pandas.py
"""
import numpy as np
import pandas as pd

import flowlearn as fl

rng = np.random.default_rng(0)  # made-up data: the label depends on income and the city
df = pd.DataFrame({"age": rng.uniform(1.8, 8.0, 1000), "income": rng.normal(5.0, 1.5, 1000),
                   "city": rng.choice(["Oslo", "Rome", "Lima"], 1000)})
df["label"] = (df.income + (df.city == "Oslo") + rng.normal(0, 1, 1000) > 6).astype(float)

model = fl.Pipeline([
    fl.feature.StringIndexer(input_cols=["city"], output_cols=["city_idx"], handle_invalid="keep"),
    fl.feature.OneHotEncoder(input_cols=["city_idx"], output_cols=["city_vec"], handle_invalid="keep"),
    fl.feature.VectorAssembler(input_cols=["age", "income", "city_vec"], output_col="features"),
    fl.classification.LogisticRegression()]).fit(df)
proba = fl.linalg.to_numpy(model.transform(df)["raw_prediction"])[:, 1]
print(proba[:5])
