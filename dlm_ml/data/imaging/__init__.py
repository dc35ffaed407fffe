"""Reading images: files through SimpleITK, DICOM series, ADC fitting, lesion masks."""
