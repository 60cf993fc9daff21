"""Feature engineering: scalers, encoders, assemblers, hashing, imputation, bucketing."""
from flowlearn.feature.assemblers import *  # noqa: F401,F403
from flowlearn.feature.bucketizer import *  # noqa: F401,F403
from flowlearn.feature.encoders import *  # noqa: F401,F403
from flowlearn.feature.imputer import *  # noqa: F401,F403
from flowlearn.feature.online_scalers import *  # noqa: F401,F403
from flowlearn.feature.scalers import *  # noqa: F401,F403
