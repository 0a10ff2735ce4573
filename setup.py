"""speechbrain-moco: speaker embeddings without labels by Momentum Contrast."""

from setuptools import find_packages, setup

setup(
    name="speechbrain-moco",
    version="0.1.0",
    description="Momentum Contrast (MoCo) speaker embeddings, built the SpeechBrain way",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["speechbrain_moco", "speechbrain_moco.*", "data_prep", "data_prep.*"]),
    install_requires=[
        "torch==2.14.1",
        "torchaudio==2.11.0",
        "speechbrain==1.1.2",
        "hyperpyyaml>=1.2.2",
        "pandas>=2.0",
        "numpy>=1.24",
        "tqdm>=4.60",
        "soundfile>=0.12",
        "scipy>=1.10",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
        "kaldiio>=2.18",  # Kaldi ark/scp embeddings (speechbrain_moco.embed --kaldi)
    ],
    extras_require={
        # ONNX export (torch's exporter needs onnx and onnxscript) and the onnxruntime check
        "onnx": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"],
        "test": ["pytest>=7", "onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"],
    },
)
