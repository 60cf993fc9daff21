"""Linear regression on diabetes (scikit-learn's bundled data): coefficients and intercept as NumPy.

    python examples/diabetes_linear_regression.py
"""
from sklearn.datasets import load_diabetes

import flowlearn as fl

X, y = load_diabetes(return_X_y=True)
model = fl.regression.LinearRegression().fit({"features": X, "label": y})
print(model.coefficients, model.intercept)
