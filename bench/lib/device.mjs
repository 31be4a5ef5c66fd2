// A description of the device a run uses, for the result files (bench, tests, sanitizer).
import { buildInfo, cuda } from 'selective-scan';
import { commitInfo, cpuInfo, nvidiaSmi, slugify, today } from './env.mjs';

export function describeDevice(target) {
  const build = buildInfo();
  if (target.kind === 'cpu' || target.simulated) {
    const cpu = cpuInfo();
    return {
      id: target.id,
      kind: target.simulated ? 'simulated-gpu' : 'cpu',
      name: cpu.name + (target.simulated ? ' (GPU code path simulated on the CPU)' : ''),
      slug: target.simulated ? 'simulated-gpu' : `cpu-${slugify(cpu.name)}-${build.cpuThreads}t`,
      logicalCpus: cpu.logicalCpus,
      threads: build.cpuThreads,
      isa: build.cpuIsa,
      memoryBytes: cpu.memoryBytes,
      driver: null,
      cudaDriverVersion: null,
      cudaRuntime: null,
    };
  }
  const smi = nvidiaSmi(target.index);
  let memory = null;
  try {
    memory = cuda.memoryInfo(target.device).totalBytes;
  } catch {}
  const name =
    smi?.name ?? `CUDA device ${target.index} (${build.cudaArchitectures.join(' ') || 'architectures unknown'})`;
  return {
    id: target.id,
    kind: 'cuda',
    name,
    nameSource: smi ? 'nvidia-smi' : 'buildInfo',
    slug: slugify(name),
    driver: smi?.driver ?? null,
    cudaDriverVersion: smi?.cudaDriverVersion ?? null,
    cudaRuntime: build.cudaRuntime,
    cudaArchitectures: build.cudaArchitectures,
    memoryBytes: memory ?? (smi?.memoryMiB ? smi.memoryMiB * 2 ** 20 : null),
    maxSmClockMHz: smi?.maxSmClockMHz ?? null,
    maxMemClockMHz: smi?.maxMemClockMHz ?? null,
    powerLimitW: smi?.powerLimitW ?? null,
    pciBusId: smi?.pciBusId ?? null,
    host: { cpu: cpuInfo().name, cpuThreads: build.cpuThreads },
  };
}

/** The fields every result file starts with (docs/ARCHITECTURE.md, "Benchmarks and the roofline"). */
export function resultHeader(what, target, command) {
  const build = buildInfo();
  return {
    schema: `selective-scan-${what}/1`,
    what,
    date: today(),
    timestamp: new Date().toISOString(),
    command,
    commit: commitInfo(),
    package: { version: build.version, build },
    node: process.version,
    device: describeDevice(target),
  };
}
