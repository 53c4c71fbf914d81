from setuptools import find_packages, setup

from felix import __version__

setup(
    name="felix",
    version=__version__,
    description="Per-host network policy agent for the Calico v1 data model",
    packages=find_packages(include=["felix", "felix.*"]),
    python_requires=">=3.10",
    install_requires=[
        "gevent>=23.9,<27",
        "python-etcd>=0.4.5,<0.5",
        "urllib3>=2.6.1,<3",
        "pyroute2>=0.9.5,<0.10",
        "prometheus-client>=0.17,<1",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "hypothesis>=6.100,<7", "pytest-timeout>=2.2,<3", "mypy>=1.10"],
    },
    entry_points={
        "console_scripts": [
            "felix = felix.main:main",
            "calico-felix = felix.main:main",
        ],
    },
)
