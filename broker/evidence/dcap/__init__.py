"""Intel DCAP: the ECDSA quote verification model shared by TDX and SGX.

``abi`` parses quotes, ``pck`` the PCK certificate's SGX extensions, ``collateral`` TCB Info,
QE Identity and CRLs, ``appraisal`` applies Intel's TCB level and status rules, ``verify``
checks signatures, chains and collateral at an instant, and ``eventlog`` replays a TDX CCEL
event log against RTMR0-3. ``broker.evidence.tdx`` and ``broker.evidence.sgx`` turn the result
into normalised claims.
"""
