"""VMIS-kNN kernel (Numba) and its Arrow Flight UDF server for RisingWave."""
