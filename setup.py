from setuptools import find_packages, setup

setup(
    name="diffasr",
    version="0.1.0",
    description="Masked-diffusion, target-speaker speech recognition recipes on ESPnet",
    packages=find_packages(include=["diffasr", "diffasr.*"]),
    package_data={"diffasr.serve": ["static/*"]},  # the served page
    python_requires=">=3.12",
    install_requires=[
        "torch==2.14.1",
        "torchaudio==2.11.0",
        "espnet[asr]==202611",
        "speechbrain==1.1.2",
        "sentencepiece==0.2.1",
        "kaldiio",
        "jiwer",
        "soundfile",
    ],
    entry_points={"console_scripts": []},
)
