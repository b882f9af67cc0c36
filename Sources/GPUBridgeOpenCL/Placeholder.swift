// OpenCL backend: see OpenCLBackend.swift
