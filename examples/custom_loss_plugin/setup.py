from setuptools import setup

setup(
    name="adcert-hinge",
    version="0.1.0",
    packages=["adcert_hinge"],
    install_requires=["adcert"],
    entry_points={"adcert.losses": ["ibp-hinge = adcert_hinge:register"]},
)
