/* conv_ties.h - ties within pool windows under any SGEMM kernel (internal; conv.c). */
#ifndef CNN_CONV_TIES_H
#define CNN_CONV_TIES_H

/* For a conv whose output is in pool-block order (out [F][4][Q], col [K][4][Q]): where
 * two of a window's four patches are identical, the later position takes the earlier
 * one's outputs, for every filter. */
void cnn_conv_window_ties(float *out, const float *col, int K, int F, int Q);

/* Whether this process's SGEMM, called as the BLAS forward calls it for a conv of F
 * filters over K taps at P positions (with or without a bias), gives bit-identical
 * outputs for identical columns: run on the calling thread alone, twice, on scratch
 * data. 1 yes, 0 no, -1 out of memory. */
int cnn_conv_sgemm_consistent(int F, int P, int K, int bias);

#endif
