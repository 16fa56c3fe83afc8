"""rocket_ctr: Rocket Launching (light + booster towers) DIN CTR model on Keras 3 / TensorFlow."""
from setuptools import find_packages, setup

setup(
    name="rocket_ctr",
    version="0.1.0",
    description="Rocket Launching CTR model: a DIN light tower trained with a booster, served by TF Serving",
    python_requires=">=3.11",
    # pipelines/, serving/ and data/ live at the top of the repo but install under the package
    # namespace, so generic names like `pipelines` never land in a user's site-packages.
    packages=[*find_packages(include=["rocket_ctr", "rocket_ctr.*"]),
              "rocket_ctr.pipelines", "rocket_ctr.serving", "rocket_ctr.datagen"],
    package_dir={
        "rocket_ctr": "rocket_ctr",
        "rocket_ctr.pipelines": "pipelines",
        "rocket_ctr.serving": "serving",
        "rocket_ctr.datagen": "data",
    },
    install_requires=[
        # Keras 3 comes with it; `tensorflow` (not -cpu): tensorflow-serving-api requires it and
        # both wheels would otherwise share one tensorflow/ folder.
        "tensorflow==2.21.*",
        "tensorflow-serving-api==2.21.*",  # PredictionService protos for export warmup, server, clients
        "grpcio>=1.60",                     # gRPC transport of the serving API
        "pyarrow>=14",                      # streaming Parquet reader/writer
        "numpy>=1.26",
        "pyyaml>=6",                        # YAML configs
        "matplotlib>=3.8",                  # curves.png
        "tensorboard>=2.16",                # tf.summary writers (TensorBoard logs of training)
    ],
    extras_require={"test": ["pytest>=8", "ruff>=0.6"]},  # ruff: the lint the test command runs
    entry_points={"console_scripts": ["rocket-ctr=rocket_ctr.pipelines.cli:main"]},
)
