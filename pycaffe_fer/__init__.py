"""pycaffe_fer: Gan, Chen & Xu (2019), soft labels with a diverse ensemble, in BVLC Caffe.

Modules, one concern each: ``classes`` (the canonical label order), ``datasets`` (readers of the
files users have), ``lmdb_io`` (Datum LMDBs), ``synth`` (the embedded synthetic set),
``softlabel`` (eqs. 2-4), ``templates`` (prototxt rendering), ``layers`` (the KL loss, eqs. 5-6),
``training`` (solver runs), ``ensemble`` (eq. 7), ``report`` (tables and plots).
"""

__version__ = "0.1.0"
