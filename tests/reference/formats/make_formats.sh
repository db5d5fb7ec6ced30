#!/usr/bin/env bash
# Frozen genotype files in every format lmmkit reads, converted by plink2 from one PLINK 1
# subset, and the plink2 readings the tests compare against.  Re-run from the project root:
#   bash tests/reference/formats/make_formats.sh
# Needs plink2 (Debian: PLINK v2.00a3.5), python3 with numpy, and ../shared.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED:-$(cd "$here/../../../../shared" 2>/dev/null && pwd || echo /work/shared)}/data/genetics
py=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$here"
p2() { plink2 --threads 1 --silent "$@"; }

# 1. The PLINK 1 subsets (all samples; every 40th / 180th SNP with a position, so several
#    chromosomes), then about 1% of calls set missing (seed 1) so missing calls are exercised.
awk '$4 > 0 && NR % 40 == 1 {print $2}' "$shared/mouse_hs1940.bim" > "$tmp/hs.snps"
awk 'NR % 180 == 1 {print $2}' "$shared/EUR_subset.bim" > "$tmp/eur.snps"
p2 --bfile "$shared/mouse_hs1940" --extract "$tmp/hs.snps" --make-bed --out "$tmp/hs"
p2 --bfile "$shared/EUR_subset" --extract "$tmp/eur.snps" --make-bed --out "$tmp/eur"
rm -f "$here"/*.{bed,bim,fam,bgen,sample,pgen,pvar,psam,vcf,gz,bcf}
for name in hs eur; do
  "$py" "$here/knock_out.py" "$tmp/$name" "$here/$name"
done

# 2. Conversions (plink2's defaults unless named: BGEN ref-last = A1 first).
for name in hs eur; do
  b="$here/$name"
  p2 --bfile "$b" --export bgen-1.2 bits=8 --out "$b.b8"
  p2 --bfile "$b" --export bgen-1.2 bits=16 --out "$b.b16"
  p2 --bfile "$b" --export bgen-1.3 --out "$b.b13"
  p2 --bfile "$b" --make-pgen --out "$b"
  p2 --bfile "$b" --export vcf bgz id-delim=+ --out "$b"               # GT only, bgzip'ed
done
b="$here/eur"
p2 --bfile "$b" --export bgen-1.2 bits=16 ref-first --out "$b.b16rf"  # REF (A2) first
p2 --bfile "$b" --export vcf id-delim=+ --out "$b"                     # plain text
p2 --bfile "$b" --export vcf bgz vcf-dosage=DS-force id-delim=+ --out "$b.ds"  # GT + DS
p2 --bfile "$b" --export bcf id-delim=+ --out "$b"
rm -f "$here"/*.log

# 3. Non-integer dosages: a (gzip) VCF with DS values (made by dosage_vcf.py from eur's genotypes
#    plus noise), read by plink2 into a PGEN (its dosages and its hard calls at plink2's
#    default --hard-call-threshold 0.1), and exported to 8-bit BGEN.
"$py" "$here/dosage_vcf.py" "$here/eur.vcf" "$here/dos.vcf.gz"
p2 --vcf "$here/dos.vcf.gz" dosage=DS --id-delim + --make-pgen --out "$here/dos"
p2 --pfile "$here/dos" --export A --out "$tmp/dos"                # plink2's ALT dosages
p2 --pfile "$here/dos" --make-bed --out "$here/dos.hard"           # plink2's hard calls
p2 --pfile "$here/dos" --export bgen-1.2 bits=8 --out "$here/dos.b8"
p2 --bgen "$here/dos.b8.bgen" ref-last --sample "$here/dos.b8.sample" --export A \
   --out "$tmp/dos.b8"                                             # plink2 reading the BGEN
gzip -c "$tmp/dos.raw" > "$here/dos.plink2.raw.gz"
gzip -c "$tmp/dos.b8.raw" > "$here/dos.b8.plink2.raw.gz"

# 4. Bad input: a PGEN with a multiallelic variant (plink2 keeps it as one record).
printf '%s\n' '##fileformat=VCFv4.2' '##contig=<ID=1>' \
  '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">' \
  "$(printf '#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts3')" \
  "$(printf '1\t100\trs1\tA\tG\t.\t.\t.\tGT\t0/1\t0/0\t1/1')" \
  "$(printf '1\t200\trs2\tC\tT,G\t.\t.\t.\tGT\t0/2\t0/1\t1/1')" \
  "$(printf '1\t300\trs3\tG\tA\t.\t.\t.\tGT\t0/0\t0/1\t0/1')" > "$here/multi.vcf"
p2 --vcf "$here/multi.vcf" --make-pgen --out "$here/multi"
rm -f "$here"/*.log "$here"/*.nosex
ls -l "$here"
