#include "textflag.h"

// func readCNTFRQ() uint64
TEXT ·readCNTFRQ(SB), NOSPLIT, $0-8
	MRS	CNTFRQ_EL0, R0
	MOVD	R0, ret+0(FP)
	RET
