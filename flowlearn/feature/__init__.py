"""Feature engineering: scalers, encoders, assemblers, hashing, imputation, bucketing and
discretization, text (tokenizers, n-grams, term frequencies, IDF), vector transforms, feature
selection, locality-sensitive hashing, random splits and SQL.

Names are imported from their modules on first use (``flowlearn._lazy``); add an export as one
entry of ``_EXPORTS``."""
from flowlearn._lazy import lazy_exports

_EXPORTS = {
    "VectorAssembler": ".assemblers",
    "FeatureHasher": ".assemblers",
    "Bucketizer": ".bucketizer",
    "StringIndexer": ".encoders",
    "StringIndexerModel": ".encoders",
    "IndexToStringModel": ".encoders",
    "OneHotEncoder": ".encoders",
    "OneHotEncoderModel": ".encoders",
    "Imputer": ".imputer",
    "ImputerModel": ".imputer",
    "OnlineStandardScaler": ".online_scalers",
    "OnlineStandardScalerModel": ".online_scalers",
    "OnlineStandardScalerTrainer": ".online_scalers",
    "StandardScaler": ".scalers",
    "StandardScalerModel": ".scalers",
    "MinMaxScaler": ".scalers",
    "MinMaxScalerModel": ".scalers",
    "MaxAbsScaler": ".scalers",
    "MaxAbsScalerModel": ".scalers",
    "RobustScaler": ".robust_scaler",
    "RobustScalerModel": ".robust_scaler",
    "KBinsDiscretizer": ".kbins",
    "KBinsDiscretizerModel": ".kbins",
    "VectorIndexer": ".vector_indexer",
    "VectorIndexerModel": ".vector_indexer",
    "UnivariateFeatureSelector": ".selectors",
    "UnivariateFeatureSelectorModel": ".selectors",
    "VarianceThresholdSelector": ".selectors",
    "VarianceThresholdSelectorModel": ".selectors",
    "Tokenizer": ".text",
    "RegexTokenizer": ".text",
    "StopWordsRemover": ".text",
    "NGram": ".text",
    "HashingTF": ".term_frequency",
    "CountVectorizer": ".term_frequency",
    "CountVectorizerModel": ".term_frequency",
    "IDF": ".term_frequency",
    "IDFModel": ".term_frequency",
    "Normalizer": ".vectors",
    "DCT": ".vectors",
    "ElementwiseProduct": ".vectors",
    "PolynomialExpansion": ".vectors",
    "Interaction": ".vectors",
    "VectorSlicer": ".vectors",
    "Binarizer": ".vectors",
    "MinHashLSH": ".lsh",
    "MinHashLSHModel": ".lsh",
    "RandomSplitter": ".splitter",
    "SQLTransformer": ".sql",
}

lazy_exports(globals(), __name__, _EXPORTS)
