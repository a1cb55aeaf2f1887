package kvm

import (
	"fmt"
	"unsafe"
)

// Device is an in-kernel device created with KVM_CREATE_DEVICE.
type Device struct {
	fd   *fd
	name string
}

// Close closes the device descriptor.
func (d *Device) Close() error { return d.fd.Close() }

// SetAttr writes *value to attribute (group, attr). value may be nil for
// attributes that take no data, such as control commands.
func (d *Device) SetAttr(group uint32, attr uint64, value *uint64) error {
	arg := DeviceAttr{Group: group, Attr: attr}
	if value != nil {
		arg.Addr = uint64(uintptr(unsafe.Pointer(value)))
	}
	_, errno := ioctlPtr(d.fd.Int(), _KVM_SET_DEVICE_ATTR, &arg)
	keepAlive(value)
	return wrap("KVM_SET_DEVICE_ATTR", d.attrName(group, attr), errno)
}

// GetAttr reads attribute (group, attr) into *value.
func (d *Device) GetAttr(group uint32, attr uint64, value *uint64) error {
	arg := DeviceAttr{Group: group, Attr: attr, Addr: uint64(uintptr(unsafe.Pointer(value)))}
	_, errno := ioctlPtr(d.fd.Int(), _KVM_GET_DEVICE_ATTR, &arg)
	keepAlive(value)
	return wrap("KVM_GET_DEVICE_ATTR", d.attrName(group, attr), errno)
}

// HasAttr reports whether the device implements attribute (group, attr).
func (d *Device) HasAttr(group uint32, attr uint64) bool {
	arg := DeviceAttr{Group: group, Attr: attr}
	_, errno := ioctlPtr(d.fd.Int(), _KVM_HAS_DEVICE_ATTR, &arg)
	return errno == 0
}

func (d *Device) attrName(group uint32, attr uint64) string {
	return fmt.Sprintf("%s attr group %d attr %#x", d.name, group, attr)
}
