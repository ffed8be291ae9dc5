# Ruby FFI callbacks (Debian ruby-ffi): qsort with a Ruby comparator.
require 'ffi'

module LibC
  extend FFI::Library
  ffi_lib FFI::Library::LIBC
  callback :compare, [:pointer, :pointer], :int
  attach_function :qsort, [:pointer, :size_t, :size_t, :compare], :void
end

values = [5, -3, 12, 7, 7, 0, 99, -40, 3]
buffer = FFI::MemoryPointer.new(:int32, values.size)
buffer.write_array_of_int32(values)
LibC.qsort(buffer, values.size, 4) { |a, b| a.read_int32 <=> b.read_int32 }
puts "VAL qsort #{buffer.read_array_of_int32(values.size).join(' ')}"
puts "DONE"
