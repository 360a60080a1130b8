"""Stress kernels, installed as ``burnin.kernels``; built-ins are imported here explicitly.

Importing this package registers every built-in kernel without importing torch: kernels import
torch inside ``run`` so that ``burnin --help``, ``burnin plan`` and ``burnin report`` stay light.
"""

from burnin.kernels import allreduce as allreduce
from burnin.kernels import matmul as matmul
from burnin.kernels import membw as membw
from burnin.kernels import memtest as memtest
from burnin.kernels import pcie as pcie
from burnin.kernels import registry as registry
