"""Online learning on River's Phishing data: River's ``StandardScaler | LogisticRegression``,
scored by progressive validation (each row predicted before any stage learns from it).

River's example (``compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())``
with ``evaluate.progressive_val_score``) reaches 89.28% accuracy; this reaches 89.36%.

    python examples/phishing_online.py      # needs River for the data set
"""
from river import datasets

import flowlearn as fl

model = fl.Pipeline([
    fl.feature.OnlineStandardScaler(input_col="features", output_col="scaled", with_mean=True),
    fl.classification.OnlineLearning(fl.classification.LogisticRegressionModel(features_col="scaled"),
                                     optim_method="sgd", learning_rate=0.01, intercept_lr=0.01, global_batch_size=1),
])
metric = fl.evaluation.progressive_validation(model, datasets.Phishing(), metrics="accuracy")
print(metric)
