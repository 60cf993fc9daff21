"""k-means on iris (scikit-learn's bundled data): three clusters of the four measurements.

    python examples/iris_kmeans.py
"""
from sklearn.datasets import load_iris

import flowlearn as fl

X, y = load_iris(return_X_y=True)
model = fl.clustering.KMeans(k=3, seed=0).fit({"features": X})
labels = model.transform({"features": X})["prediction"].to_numpy()
print(labels[:10], model.get_model_data()[0]["centroids"].to_pylist())
