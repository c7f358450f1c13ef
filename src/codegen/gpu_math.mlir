// bonsai's f32 math for GPU kernels: what libdevice (`__nv_*`) would provide, written in arith
// ops and LLVM intrinsics that the NVPTX backend lowers to native instructions, so the PTX is
// self-contained (no CUDA toolkit is needed to build it, and the driver can load it as is).
// Polynomials after Cephes (S. Moshier); each is accurate to a few ulp on its usual range.
// `llvm.call_intrinsic` keeps the generic intrinsics away from the GPU conversion, which
// would turn the typed `llvm.intr.*` ops into libdevice calls.
module {
  func.func private @bonsai_gpu_sqrtf(%x: f32) -> f32 {
    %r = llvm.call_intrinsic "llvm.sqrt.f32"(%x) : (f32) -> f32
    return %r : f32
  }
  func.func private @bonsai_gpu_fabsf(%x: f32) -> f32 {
    %r = llvm.call_intrinsic "llvm.fabs.f32"(%x) : (f32) -> f32
    return %r : f32
  }
  func.func private @bonsai_gpu_floorf(%x: f32) -> f32 {
    %r = llvm.call_intrinsic "llvm.floor.f32"(%x) : (f32) -> f32
    return %r : f32
  }
  func.func private @bonsai_gpu_ceilf(%x: f32) -> f32 {
    %r = llvm.call_intrinsic "llvm.ceil.f32"(%x) : (f32) -> f32
    return %r : f32
  }
  func.func private @bonsai_gpu_roundevenf(%x: f32) -> f32 {
    %r = llvm.call_intrinsic "llvm.roundeven.f32"(%x) : (f32) -> f32
    return %r : f32
  }
  func.func private @bonsai_gpu_sqrt(%x: f64) -> f64 {
    %r = llvm.call_intrinsic "llvm.sqrt.f64"(%x) : (f64) -> f64
    return %r : f64
  }
  func.func private @bonsai_gpu_fabs(%x: f64) -> f64 {
    %r = llvm.call_intrinsic "llvm.fabs.f64"(%x) : (f64) -> f64
    return %r : f64
  }
  func.func private @bonsai_gpu_floor(%x: f64) -> f64 {
    %r = llvm.call_intrinsic "llvm.floor.f64"(%x) : (f64) -> f64
    return %r : f64
  }
  func.func private @bonsai_gpu_ceil(%x: f64) -> f64 {
    %r = llvm.call_intrinsic "llvm.ceil.f64"(%x) : (f64) -> f64
    return %r : f64
  }
  func.func private @bonsai_gpu_roundeven(%x: f64) -> f64 {
    %r = llvm.call_intrinsic "llvm.roundeven.f64"(%x) : (f64) -> f64
    return %r : f64
  }

  // e^x: n = round(x log2 e), r = x - n ln2 (Cody-Waite), e^r by a degree-6 polynomial,
  // scaled by 2^n in two halves so that results near the overflow and underflow ends stay
  // exact powers of two.
  func.func private @bonsai_gpu_expf(%x: f32) -> f32 {
    %lo = arith.constant -104.0 : f32
    %hi = arith.constant 88.8 : f32
    %log2e = arith.constant 1.44269504088896341 : f32
    %c1 = arith.constant 0.693359375 : f32
    %c2 = arith.constant -2.12194440e-4 : f32
    %p0 = arith.constant 1.9875691500e-4 : f32
    %p1 = arith.constant 1.3981999507e-3 : f32
    %p2 = arith.constant 8.3334519073e-3 : f32
    %p3 = arith.constant 4.1665795894e-2 : f32
    %p4 = arith.constant 1.6666665459e-1 : f32
    %p5 = arith.constant 5.0000001201e-1 : f32
    %one = arith.constant 1.0 : f32
    %i1 = arith.constant 1 : i32
    %i127 = arith.constant 127 : i32
    %i23 = arith.constant 23 : i32
    %a = arith.maxnumf %x, %lo : f32
    %xc = arith.minnumf %a, %hi : f32
    %t = arith.mulf %xc, %log2e : f32
    %fn = llvm.call_intrinsic "llvm.roundeven.f32"(%t) : (f32) -> f32
    %m1 = arith.mulf %fn, %c1 : f32
    %r1 = arith.subf %xc, %m1 : f32
    %m2 = arith.mulf %fn, %c2 : f32
    %r = arith.subf %r1, %m2 : f32
    %q0 = arith.mulf %p0, %r : f32
    %q1 = arith.addf %q0, %p1 : f32
    %q2 = arith.mulf %q1, %r : f32
    %q3 = arith.addf %q2, %p2 : f32
    %q4 = arith.mulf %q3, %r : f32
    %q5 = arith.addf %q4, %p3 : f32
    %q6 = arith.mulf %q5, %r : f32
    %q7 = arith.addf %q6, %p4 : f32
    %q8 = arith.mulf %q7, %r : f32
    %q9 = arith.addf %q8, %p5 : f32
    %rr = arith.mulf %r, %r : f32
    %y0 = arith.mulf %q9, %rr : f32
    %y1 = arith.addf %y0, %r : f32
    %y = arith.addf %y1, %one : f32
    %n = arith.fptosi %fn : f32 to i32
    %n1 = arith.shrsi %n, %i1 : i32
    %n2 = arith.subi %n, %n1 : i32
    %e1 = arith.addi %n1, %i127 : i32
    %b1 = arith.shli %e1, %i23 : i32
    %s1 = arith.bitcast %b1 : i32 to f32
    %e2 = arith.addi %n2, %i127 : i32
    %b2 = arith.shli %e2, %i23 : i32
    %s2 = arith.bitcast %b2 : i32 to f32
    %z1 = arith.mulf %y, %s1 : f32
    %z = arith.mulf %z1, %s2 : f32
    %nan = arith.cmpf uno, %x, %x : f32
    %res = arith.select %nan, %x, %z : f32
    return %res : f32
  }

  // ln x: x = m 2^e with m in [sqrt(1/2), sqrt(2)), ln(m) by a degree-9 polynomial in m - 1.
  // Subnormal inputs are scaled by 2^23 first.
  func.func private @bonsai_gpu_logf(%x: f32) -> f32 {
    %tiny = arith.constant 1.17549435e-38 : f32
    %scale = arith.constant 8388608.0 : f32
    %zero = arith.constant 0.0 : f32
    %one = arith.constant 1.0 : f32
    %half = arith.constant 0.5 : f32
    %sqrthf = arith.constant 0.707106781186547524 : f32
    %inf = arith.constant 0x7F800000 : f32
    %ninf = arith.constant 0xFF800000 : f32
    %qnan = arith.constant 0x7FC00000 : f32
    %c1 = arith.constant 0.693359375 : f32
    %c2 = arith.constant -2.12194440e-4 : f32
    %i0 = arith.constant 0 : i32
    %i1 = arith.constant 1 : i32
    %i23 = arith.constant 23 : i32
    %i126 = arith.constant 126 : i32
    %i255 = arith.constant 255 : i32
    %mmask = arith.constant 8388607 : i32
    %halfbits = arith.constant 1056964608 : i32
    %small = arith.cmpf olt, %x, %tiny : f32
    %xs0 = arith.mulf %x, %scale : f32
    %xs = arith.select %small, %xs0, %x : f32
    %adj = arith.select %small, %i23, %i0 : i32
    %bits = arith.bitcast %xs : f32 to i32
    %eb = arith.shrui %bits, %i23 : i32
    %eb1 = arith.andi %eb, %i255 : i32
    %e0 = arith.subi %eb1, %i126 : i32
    %e1 = arith.subi %e0, %adj : i32
    %mb0 = arith.andi %bits, %mmask : i32
    %mb = arith.ori %mb0, %halfbits : i32
    %m0 = arith.bitcast %mb : i32 to f32
    %lt = arith.cmpf olt, %m0, %sqrthf : f32
    %e1m = arith.subi %e1, %i1 : i32
    %e = arith.select %lt, %e1m, %e1 : i32
    %m2 = arith.addf %m0, %m0 : f32
    %ma = arith.subf %m2, %one : f32
    %mb2 = arith.subf %m0, %one : f32
    %m = arith.select %lt, %ma, %mb2 : f32
    %fe = arith.sitofp %e : i32 to f32
    %z = arith.mulf %m, %m : f32
    %k0 = arith.constant 7.0376836292e-2 : f32
    %k1 = arith.constant -1.1514610310e-1 : f32
    %k2 = arith.constant 1.1676998740e-1 : f32
    %k3 = arith.constant -1.2420140846e-1 : f32
    %k4 = arith.constant 1.4249322787e-1 : f32
    %k5 = arith.constant -1.6668057665e-1 : f32
    %k6 = arith.constant 2.0000714765e-1 : f32
    %k7 = arith.constant -2.4999993993e-1 : f32
    %k8 = arith.constant 3.3333331174e-1 : f32
    %y0 = arith.mulf %k0, %m : f32
    %y1 = arith.addf %y0, %k1 : f32
    %y2 = arith.mulf %y1, %m : f32
    %y3 = arith.addf %y2, %k2 : f32
    %y4 = arith.mulf %y3, %m : f32
    %y5 = arith.addf %y4, %k3 : f32
    %y6 = arith.mulf %y5, %m : f32
    %y7 = arith.addf %y6, %k4 : f32
    %y8 = arith.mulf %y7, %m : f32
    %y9 = arith.addf %y8, %k5 : f32
    %y10 = arith.mulf %y9, %m : f32
    %y11 = arith.addf %y10, %k6 : f32
    %y12 = arith.mulf %y11, %m : f32
    %y13 = arith.addf %y12, %k7 : f32
    %y14 = arith.mulf %y13, %m : f32
    %y15 = arith.addf %y14, %k8 : f32
    %y16 = arith.mulf %y15, %m : f32
    %y17 = arith.mulf %y16, %z : f32
    %fc2 = arith.mulf %fe, %c2 : f32
    %y18 = arith.addf %y17, %fc2 : f32
    %hz = arith.mulf %z, %half : f32
    %y19 = arith.subf %y18, %hz : f32
    %r0 = arith.addf %m, %y19 : f32
    %fc1 = arith.mulf %fe, %c1 : f32
    %r1 = arith.addf %r0, %fc1 : f32
    %neg = arith.cmpf olt, %x, %zero : f32
    %r2 = arith.select %neg, %qnan, %r1 : f32
    %isz = arith.cmpf oeq, %x, %zero : f32
    %r3 = arith.select %isz, %ninf, %r2 : f32
    %isinf = arith.cmpf oeq, %x, %inf : f32
    %r4 = arith.select %isinf, %inf, %r3 : f32
    %nan = arith.cmpf uno, %x, %x : f32
    %r5 = arith.select %nan, %x, %r4 : f32
    return %r5 : f32
  }

  // ln(1 + x), accurate for small x: ln(u) * x / (u - 1) with u = 1 + x.
  func.func private @bonsai_gpu_log1pf(%x: f32) -> f32 {
    %one = arith.constant 1.0 : f32
    %inf = arith.constant 0x7F800000 : f32
    %u = arith.addf %x, %one : f32
    %l = func.call @bonsai_gpu_logf(%u) : (f32) -> f32
    %d = arith.subf %u, %one : f32
    %lx = arith.mulf %l, %x : f32
    %q = arith.divf %lx, %d : f32
    %exact = arith.cmpf oeq, %u, %one : f32
    %r0 = arith.select %exact, %x, %q : f32
    %isinf = arith.cmpf oeq, %x, %inf : f32
    %r1 = arith.select %isinf, %inf, %r0 : f32
    %ninf = arith.cmpf oeq, %u, %inf : f32
    %r2 = arith.select %ninf, %l, %r1 : f32
    return %r2 : f32
  }

  // 2^x = e^(x ln 2).
  func.func private @bonsai_gpu_exp2f(%x: f32) -> f32 {
    %ln2 = arith.constant 0.693147180559945309 : f32
    %t = arith.mulf %x, %ln2 : f32
    %r = func.call @bonsai_gpu_expf(%t) : (f32) -> f32
    return %r : f32
  }

  // tanh: odd polynomial below |x| = 0.625, 1 - 2 / (e^(2|x|) + 1) above.
  func.func private @bonsai_gpu_tanhf(%x: f32) -> f32 {
    %zero = arith.constant 0.0 : f32
    %one = arith.constant 1.0 : f32
    %two = arith.constant 2.0 : f32
    %lim = arith.constant 0.625 : f32
    %k0 = arith.constant -5.70498872745e-3 : f32
    %k1 = arith.constant 2.06390887954e-2 : f32
    %k2 = arith.constant -5.37397155531e-2 : f32
    %k3 = arith.constant 1.33314422036e-1 : f32
    %k4 = arith.constant -3.33332819422e-1 : f32
    %a = llvm.call_intrinsic "llvm.fabs.f32"(%x) : (f32) -> f32
    %z = arith.mulf %x, %x : f32
    %p0 = arith.mulf %k0, %z : f32
    %p1 = arith.addf %p0, %k1 : f32
    %p2 = arith.mulf %p1, %z : f32
    %p3 = arith.addf %p2, %k2 : f32
    %p4 = arith.mulf %p3, %z : f32
    %p5 = arith.addf %p4, %k3 : f32
    %p6 = arith.mulf %p5, %z : f32
    %p7 = arith.addf %p6, %k4 : f32
    %p8 = arith.mulf %p7, %z : f32
    %p9 = arith.mulf %p8, %x : f32
    %small = arith.addf %p9, %x : f32
    %a2 = arith.mulf %a, %two : f32
    %e = func.call @bonsai_gpu_expf(%a2) : (f32) -> f32
    %e1 = arith.addf %e, %one : f32
    %q = arith.divf %two, %e1 : f32
    %t = arith.subf %one, %q : f32
    %nt = arith.negf %t : f32
    %neg = arith.cmpf olt, %x, %zero : f32
    %big = arith.select %neg, %nt, %t : f32
    %issmall = arith.cmpf olt, %a, %lim : f32
    %r = arith.select %issmall, %small, %big : f32
    return %r : f32
  }

  // erf: odd polynomial below |x| = 1 (Cephes), Abramowitz-Stegun 7.1.26 above (absolute
  // error under 1.5e-7 where erf is above 0.84).
  func.func private @bonsai_gpu_erff(%x: f32) -> f32 {
    %zero = arith.constant 0.0 : f32
    %one = arith.constant 1.0 : f32
    %k0 = arith.constant 7.853861353153693e-5 : f32
    %k1 = arith.constant -8.010193625184903e-4 : f32
    %k2 = arith.constant 5.188327685732524e-3 : f32
    %k3 = arith.constant -2.685381193529856e-2 : f32
    %k4 = arith.constant 1.128358514861418e-1 : f32
    %k5 = arith.constant -3.761262582423300e-1 : f32
    %k6 = arith.constant 1.128379165726710 : f32
    %p = arith.constant 0.3275911 : f32
    %a1 = arith.constant 0.254829592 : f32
    %a2 = arith.constant -0.284496736 : f32
    %a3 = arith.constant 1.421413741 : f32
    %a4 = arith.constant -1.453152027 : f32
    %a5 = arith.constant 1.061405429 : f32
    %ax = llvm.call_intrinsic "llvm.fabs.f32"(%x) : (f32) -> f32
    %z = arith.mulf %x, %x : f32
    %s0 = arith.mulf %k0, %z : f32
    %s1 = arith.addf %s0, %k1 : f32
    %s2 = arith.mulf %s1, %z : f32
    %s3 = arith.addf %s2, %k2 : f32
    %s4 = arith.mulf %s3, %z : f32
    %s5 = arith.addf %s4, %k3 : f32
    %s6 = arith.mulf %s5, %z : f32
    %s7 = arith.addf %s6, %k4 : f32
    %s8 = arith.mulf %s7, %z : f32
    %s9 = arith.addf %s8, %k5 : f32
    %s10 = arith.mulf %s9, %z : f32
    %s11 = arith.addf %s10, %k6 : f32
    %small = arith.mulf %s11, %x : f32
    %pt = arith.mulf %p, %ax : f32
    %pt1 = arith.addf %pt, %one : f32
    %t = arith.divf %one, %pt1 : f32
    %b0 = arith.mulf %a5, %t : f32
    %b1 = arith.addf %b0, %a4 : f32
    %b2 = arith.mulf %b1, %t : f32
    %b3 = arith.addf %b2, %a3 : f32
    %b4 = arith.mulf %b3, %t : f32
    %b5 = arith.addf %b4, %a2 : f32
    %b6 = arith.mulf %b5, %t : f32
    %b7 = arith.addf %b6, %a1 : f32
    %b8 = arith.mulf %b7, %t : f32
    %nz = arith.negf %z : f32
    %ez = func.call @bonsai_gpu_expf(%nz) : (f32) -> f32
    %c = arith.mulf %b8, %ez : f32
    %big0 = arith.subf %one, %c : f32
    %nbig = arith.negf %big0 : f32
    %neg = arith.cmpf olt, %x, %zero : f32
    %big = arith.select %neg, %nbig, %big0 : f32
    %issmall = arith.cmpf olt, %ax, %one : f32
    %r0 = arith.select %issmall, %small, %big : f32
    %nan = arith.cmpf uno, %x, %x : f32
    %r = arith.select %nan, %x, %r0 : f32
    return %r : f32
  }

  // sin and cos: q = round(x 2/pi), r = x - q pi/2 in three parts, then the quadrant q mod 4
  // picks +-sin(r) or +-cos(r). Accurate while |x| is well below 2^22.
  func.func private @bonsai_gpu_sincos_reduce(%x: f32) -> (f32, f32, i32) {
    %twoopi = arith.constant 0.636619772367581343 : f32
    %d1 = arith.constant 1.5703125 : f32
    %d2 = arith.constant 4.837512969970703125e-4 : f32
    %d3 = arith.constant 7.54978995489188216e-8 : f32
    %lim = arith.constant 1.0e9 : f32
    %nlim = arith.constant -1.0e9 : f32
    %one = arith.constant 1.0 : f32
    %half = arith.constant 0.5 : f32
    %i3 = arith.constant 3 : i32
    %s0c = arith.constant -1.9515295891e-4 : f32
    %s1c = arith.constant 8.3321608736e-3 : f32
    %s2c = arith.constant -1.6666654611e-1 : f32
    %c0c = arith.constant 2.443315711809948e-5 : f32
    %c1c = arith.constant -1.388731625493765e-3 : f32
    %c2c = arith.constant 4.166664568298827e-2 : f32
    %t = arith.mulf %x, %twoopi : f32
    %q0 = llvm.call_intrinsic "llvm.roundeven.f32"(%t) : (f32) -> f32
    %qa = arith.maxnumf %q0, %nlim : f32
    %q = arith.minnumf %qa, %lim : f32
    %m1 = arith.mulf %q, %d1 : f32
    %r1 = arith.subf %x, %m1 : f32
    %m2 = arith.mulf %q, %d2 : f32
    %r2 = arith.subf %r1, %m2 : f32
    %m3 = arith.mulf %q, %d3 : f32
    %r = arith.subf %r2, %m3 : f32
    %z = arith.mulf %r, %r : f32
    %a0 = arith.mulf %s0c, %z : f32
    %a1 = arith.addf %a0, %s1c : f32
    %a2 = arith.mulf %a1, %z : f32
    %a3 = arith.addf %a2, %s2c : f32
    %a4 = arith.mulf %a3, %z : f32
    %a5 = arith.mulf %a4, %r : f32
    %sin = arith.addf %a5, %r : f32
    %b0 = arith.mulf %c0c, %z : f32
    %b1 = arith.addf %b0, %c1c : f32
    %b2 = arith.mulf %b1, %z : f32
    %b3 = arith.addf %b2, %c2c : f32
    %b4 = arith.mulf %b3, %z : f32
    %b5 = arith.mulf %b4, %z : f32
    %hz = arith.mulf %z, %half : f32
    %b6 = arith.subf %b5, %hz : f32
    %cos = arith.addf %b6, %one : f32
    %qi = arith.fptosi %q : f32 to i32
    %k = arith.andi %qi, %i3 : i32
    return %sin, %cos, %k : f32, f32, i32
  }

  func.func private @bonsai_gpu_sinf(%x: f32) -> f32 {
    %i1 = arith.constant 1 : i32
    %i2 = arith.constant 2 : i32
    %inf = arith.constant 0x7F800000 : f32
    %qnan = arith.constant 0x7FC00000 : f32
    %s, %c, %k = func.call @bonsai_gpu_sincos_reduce(%x) : (f32) -> (f32, f32, i32)
    // Quadrants 0..3: sin, cos, -sin, -cos.
    %odd0 = arith.andi %k, %i1 : i32
    %odd = arith.cmpi eq, %odd0, %i1 : i32
    %v = arith.select %odd, %c, %s : f32
    %neg0 = arith.andi %k, %i2 : i32
    %neg = arith.cmpi eq, %neg0, %i2 : i32
    %nv = arith.negf %v : f32
    %r0 = arith.select %neg, %nv, %v : f32
    %ax = llvm.call_intrinsic "llvm.fabs.f32"(%x) : (f32) -> f32
    %bad = arith.cmpf uge, %ax, %inf : f32
    %r = arith.select %bad, %qnan, %r0 : f32
    return %r : f32
  }

  func.func private @bonsai_gpu_cosf(%x: f32) -> f32 {
    %i1 = arith.constant 1 : i32
    %i2 = arith.constant 2 : i32
    %inf = arith.constant 0x7F800000 : f32
    %qnan = arith.constant 0x7FC00000 : f32
    %s, %c, %k = func.call @bonsai_gpu_sincos_reduce(%x) : (f32) -> (f32, f32, i32)
    // Quadrants 0..3: cos, -sin, -cos, sin.
    %odd0 = arith.andi %k, %i1 : i32
    %odd = arith.cmpi eq, %odd0, %i1 : i32
    %v = arith.select %odd, %s, %c : f32
    %q1 = arith.cmpi eq, %k, %i1 : i32
    %q2 = arith.cmpi eq, %k, %i2 : i32
    %neg = arith.ori %q1, %q2 : i1
    %nv = arith.negf %v : f32
    %r0 = arith.select %neg, %nv, %v : f32
    %ax = llvm.call_intrinsic "llvm.fabs.f32"(%x) : (f32) -> f32
    %bad = arith.cmpf uge, %ax, %inf : f32
    %r = arith.select %bad, %qnan, %r0 : f32
    return %r : f32
  }

  // x^y = e^(y ln|x|), negated for negative x and odd integer y; NaN for negative x and
  // non-integer y; 1 for y = 0 or x = 1.
  func.func private @bonsai_gpu_powf(%x: f32, %y: f32) -> f32 {
    %zero = arith.constant 0.0 : f32
    %one = arith.constant 1.0 : f32
    %half = arith.constant 0.5 : f32
    %qnan = arith.constant 0x7FC00000 : f32
    %ax = llvm.call_intrinsic "llvm.fabs.f32"(%x) : (f32) -> f32
    %l = func.call @bonsai_gpu_logf(%ax) : (f32) -> f32
    %yl = arith.mulf %y, %l : f32
    %e = func.call @bonsai_gpu_expf(%yl) : (f32) -> f32
    %yr = llvm.call_intrinsic "llvm.roundeven.f32"(%y) : (f32) -> f32
    %yint = arith.cmpf oeq, %yr, %y : f32
    %yh = arith.mulf %y, %half : f32
    %yhr = llvm.call_intrinsic "llvm.roundeven.f32"(%yh) : (f32) -> f32
    %yheven = arith.cmpf oeq, %yhr, %yh : f32
    %true = arith.constant true
    %yodd0 = arith.xori %yheven, %true : i1
    %yodd = arith.andi %yint, %yodd0 : i1
    %neg = arith.cmpf olt, %x, %zero : f32
    %flip = arith.andi %neg, %yodd : i1
    %ne = arith.negf %e : f32
    %r0 = arith.select %flip, %ne, %e : f32
    %notint = arith.xori %yint, %true : i1
    %bad = arith.andi %neg, %notint : i1
    %r1 = arith.select %bad, %qnan, %r0 : f32
    %y0 = arith.cmpf oeq, %y, %zero : f32
    %x1 = arith.cmpf oeq, %x, %one : f32
    %unit = arith.ori %y0, %x1 : i1
    %r = arith.select %unit, %one, %r1 : f32
    return %r : f32
  }
}
