from setuptools import find_packages, setup

setup(
    name="ecomm-assets",
    version="0.1.0",
    description="A Dagster-native e-commerce order-analytics lake: local or on AWS, same code.",
    packages=find_packages(exclude=["ecomm_assets_tests*", "bench*", "lambda_bridge*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        "dagster==1.13.27",
        "dagster-aws==0.29.27",
        "pandas==3.1.1",
        "pyarrow==26.0.1",
        "duckdb==2.0.0",
        "boto3==1.44.5",
        "requests==2.34.2",
        "numpy>=2",
        "matplotlib==3.11.2",
    ],
    extras_require={
        "dev": [
            "dagster-webserver==1.13.27",
            "dagster-graphql==1.13.27",
            "moto[server]==5.2.5",
            "pytest==9.2.0",
            "pytest-xdist==3.8.0",  # the suite runs on every core (pytest.ini)
            "dagster-postgres==0.29.27",  # test_deploy validates the production instance config
        ],
        "deploy": ["dagster-postgres==0.29.27"],
    },
)
