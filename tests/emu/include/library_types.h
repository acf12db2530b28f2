/*
 * library_types.h (emulated device): the data types the CUDA math libraries name (values as the toolkit's).
 */
#ifndef GPTRAIN_EMU_LIBRARY_TYPES_H
#define GPTRAIN_EMU_LIBRARY_TYPES_H

typedef enum cudaDataType_t {
    CUDA_R_32F = 0,
    CUDA_R_64F = 1,
    CUDA_R_16F = 2,
    CUDA_R_8I = 3,
    CUDA_R_32I = 10,
    CUDA_R_16BF = 14,
    CUDA_R_8F_E4M3 = 28,
    CUDA_R_8F_E5M2 = 29
} cudaDataType;

#endif
