// CUDA backend: see CUDABackend.swift
